"""Short-run ablation of bow_svm on a stratified subset of FER-2013 (7 emotions), scored on a PublicTest subset.

    python benchmarks/bow_svm_ablation.py --data /path/to/fer2013 --out bow-ablation.jsonl [--vocabularies sift400,...]
    python benchmarks/bow_svm_ablation.py --data /path/to/fer2013 --out bow-ablation.jsonl --speed

Each vocabulary (descriptor kind and vocabulary size) is learned once, as bow_svm's fit learns it (seed 0), on a
seeded stratified sample of Training; every descriptor of the training and validation images is assigned its word
once; then every variant (pyramid, kernel map) is encoded from those words and its C is chosen on a seeded
stratified sample of PublicTest exactly as fit chooses it (BowSVMClassifier.fit_svm). One JSON line per variant is
appended to --out: its settings, the subset sizes, the calibrated PublicTest accuracy of the chosen C and of every
C, the seconds of the vocabulary, of the word assignment and of its own SVM grid, the machine
(fer_bench.provenance.machine_label) and the commit. PrivateTest is never read. Variants already in --out are
skipped, so an interrupted ablation resumes. docs/bow-svm.md holds the table of one such ablation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from fer_bench.baselines.bow_svm import make_bow_svm
from fer_bench.baselines.dense_descriptors import dense_descriptors, descriptor_centres
from fer_bench.baselines.spatial_pyramid import pyramid_histograms, pyramid_regions
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from fer_bench.data import load_dataset
from fer_bench.provenance import git_commit, machine_info, machine_label

N_TRAIN, N_PUBLIC = 2000, 1000


def vocabulary_sample(n_train: int) -> dict:
    """The vocabulary's sample, smaller than the defaults in proportion to the training images: 500 faces and
    30,000 descriptors for 2,000 of them."""
    return {"vocabulary_images": n_train // 4, "vocabulary_descriptors": 15 * n_train}


ABLATION_CS = (0.3, 1.0, 3.0)
#: vocabulary name -> (its parameters, the variants scored on it: name -> parameters); the step is pinned, since
#: the runs chose the default (2)
VOCABULARIES = {
    "sift400": ({"descriptor": "sift", "vocabulary_size": 400, "step": 4}, {
        "sift400": {}, "sift400-pyramid1": {"pyramid": (1,)}, "sift400-pyramid12": {"pyramid": (1, 2)},
        "sift400-chi2": {"kernel_map": "chi2"}, "sift400-linear": {"kernel_map": "linear"},
        "sift400-lowC": {"Cs": (0.01, 0.03, 0.1)}}),
    "hog400": ({"descriptor": "hog", "vocabulary_size": 400, "step": 4}, {"hog400": {}}),
    "sift200": ({"descriptor": "sift", "vocabulary_size": 200, "step": 4}, {"sift200": {}}),
    "sift800": ({"descriptor": "sift", "vocabulary_size": 800, "step": 4}, {"sift800": {}}),
    "daisy400": ({"descriptor": "daisy", "vocabulary_size": 400, "step": 4}, {"daisy400": {}}),
    "sift400-step2": ({"descriptor": "sift", "vocabulary_size": 400, "step": 2}, {"sift400-step2": {}}),
    "sift2000-step2": ({"descriptor": "sift", "vocabulary_size": 2000, "step": 2}, {"sift2000-step2": {}}),
    # Fisher vectors: a 64-dimensional PCA of the descriptors, a Gaussian mixture of vocabulary_size components;
    # each variant encodes again (no words to share), its pyramid given in the variant
    "fisher32": ({"encoding": "fisher", "vocabulary_size": 32, "pca_components": 64, "step": 2}, {
        "fisher32-pyramid12": {"pyramid": (1, 2)},
        "fisher32-pyramid12-nopower": {"pyramid": (1, 2), "kernel_map": "linear"}}),
    "fisher64": ({"encoding": "fisher", "vocabulary_size": 64, "pca_components": 64, "step": 2}, {
        "fisher64-pyramid12": {"pyramid": (1, 2)},
        "fisher64-pyramid12-lowC": {"pyramid": (1, 2), "Cs": (0.03, 0.1, 0.3)},
        "fisher64-pyramid12-lssvm": {"pyramid": (1, 2), "solver": "least_squares", "Cs": (0.03, 0.1, 0.3, 1.0)},
        "fisher64-pyramid12-lssvm-mirror": {"pyramid": (1, 2), "solver": "least_squares", "mirror": True,
                                            "Cs": (0.1, 0.3, 1.0)}}),
    "fisher128-pca48": ({"encoding": "fisher", "vocabulary_size": 128, "pca_components": 48, "step": 2}, {
        "fisher128-pca48-pyramid12-lssvm": {"pyramid": (1, 2), "solver": "least_squares", "Cs": (0.1, 0.3, 1.0)}}),
    "fisher16": ({"encoding": "fisher", "vocabulary_size": 16, "pca_components": 64, "step": 2}, {
        "fisher16-pyramid124": {"pyramid": (1, 2, 4)}}),
}


def stratified(images, labels, n, seed):
    """A seeded stratified sample of n images, in their order; all of them when n is their number or more."""
    if n >= len(labels):
        return images, labels
    index, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    index = np.sort(index)
    return images[index], labels[index]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--vocabularies", default=",".join(VOCABULARIES))
    parser.add_argument("--train-images", type=int, default=N_TRAIN, help="stratified Training subset (seed 1)")
    parser.add_argument("--public-images", type=int, default=N_PUBLIC, help="stratified PublicTest subset (seed 2)")
    parser.add_argument("--speed", action="store_true",
                        help="instead: descriptor extraction speed of each kind, in images per CPU-second of one "
                             "thread (CPU time, so other work on the machine hardly moves it)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.vocabularies.split(",") if name.strip()]
    unknown = [name for name in names if name not in VOCABULARIES]
    if unknown:
        parser.error(f"unknown vocabularies {', '.join(unknown)}; known: {', '.join(VOCABULARIES)}")
    done = set()
    if args.out.exists():
        done = {(record["run"], record.get("n_train"), record.get("n_public"))
                for record in map(json.loads, filter(str.strip, args.out.read_text().splitlines()))}
    dataset = load_dataset(args.data, fallback_to_synthetic=False)
    X, y = stratified(dataset.split("Training").images, dataset.split("Training").labels, args.train_images, seed=1)
    X_val, y_val = stratified(dataset.split("PublicTest").images, dataset.split("PublicTest").labels,
                              args.public_images, seed=2)
    machine, commit = machine_label(machine_info()), git_commit()
    if args.speed:
        for kind, n_images in (("sift", 300), ("hog", 300), ("daisy", 60)):
            if (f"speed-{kind}", None, None) in done:
                continue
            with threadpool_limits(1):
                dense_descriptors(X[:4], kind, (2, 3, 4), 4)  # warm-up
                cpu = time.process_time()
                descriptors = dense_descriptors(X[:n_images], kind, (2, 3, 4), 4)
                cpu = time.process_time() - cpu
            record = {"run": f"speed-{kind}", "n_images": n_images, "descriptors_per_image": descriptors.shape[1],
                      "descriptor_length": descriptors.shape[2], "images_per_cpu_s": round(n_images / cpu, 1),
                      "machine": machine, "commit": commit}
            with args.out.open("a") as out:
                out.write(json.dumps(record) + "\n")
            print(f"{kind}: {record['images_per_cpu_s']} images per CPU-second (one thread)", flush=True)
        return
    for name in names:
        params, variants = VOCABULARIES[name]
        size = (len(y), len(y_val))
        if {(variant, *size) for variant in variants} <= done:
            continue
        # the ablation's base (the earlier defaults): histograms, LinearSVC; each vocabulary and variant changes it
        model = make_bow_svm(seed=0, verbose=False, **{"encoding": "histogram", "solver": "liblinear",
                                                       "pyramid": (1, 2, 4), "Cs": ABLATION_CS,
                                                       **vocabulary_sample(len(y)), **params})
        fisher = model.encoding == "fisher"
        with threadpool_limits(1):  # as fit runs
            started = time.perf_counter()
            # the vocabulary exactly as fit learns it (same seeded sample), shared by every variant below
            model._learn_vocabulary(X, np.random.default_rng(model.random_state))
            vocabulary_seconds = time.perf_counter() - started
            started = time.perf_counter()
            # histograms: every descriptor's word once, each variant's pyramid counted from them; Fisher vectors
            # are encoded per variant (the "words" column is then that variant's encoding)
            words, val_words = (None, None) if fisher else (model.visual_words(X), model.visual_words(X_val))
            words_seconds = time.perf_counter() - started
            centres = descriptor_centres(model.descriptor, model.scales, model.step)
            for variant, variant_params in variants.items():
                if (variant, *size) in done:
                    continue
                model.set_params(**{"pyramid": (1, 2, 4), "kernel_map": "hellinger", "solver": "liblinear",
                                    "mirror": False, "Cs": ABLATION_CS, **variant_params})
                started = time.perf_counter()
                model.regions_, model.region_weights_ = pyramid_regions(centres, model.pyramid)
                if fisher:
                    features, val_features = model.encode(X), model.encode(X_val)
                    words_seconds = time.perf_counter() - started
                else:
                    features, val_features = (pyramid_histograms(w, model.regions_, model.region_weights_,
                                                                 model.vocabulary_size) for w in (words, val_words))
                svm_started = time.perf_counter()
                chosen = model.fit_svm(features, y, np.ones(len(y)), val_features, y_val)
                record = {"run": variant, "params": {**params, **variant_params}, "n_train": len(y),
                          "n_public": len(y_val), "public_accuracy": chosen["validation_accuracy"], "C": chosen["C"],
                          "scores": chosen["validation_scores"], "n_features": chosen["n_features"],
                          "vocabulary_seconds": round(vocabulary_seconds, 1), "words_seconds": round(words_seconds, 1),
                          "svm_seconds": round(time.perf_counter() - svm_started, 1), "machine": machine,
                          "commit": commit}
                with args.out.open("a") as out:
                    out.write(json.dumps(record) + "\n")
                print(f"{variant}: PublicTest {100 * record['public_accuracy']:.1f}% (C={record['C']}), "
                      f"vocabulary {record['vocabulary_seconds']} s, words {record['words_seconds']} s, "
                      f"SVM {record['svm_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
