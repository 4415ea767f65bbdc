"""Where a result comes from: the machine's speed-relevant CPU features and how the report names a machine."""

from fer_bench.provenance import SPEED_RELEVANT_CPU_FLAGS, cpu_features, machine_info, machine_label

X86_CPUINFO = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16
processor\t: 1
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n"


def test_cpu_features_keep_the_flags_that_change_speed_in_a_fixed_order():
    assert cpu_features(X86_CPUINFO) == ["avx2", "fma", "avx512f", "avx512_bf16"]
    assert cpu_features(ARM_CPUINFO) == ["asimd"]
    assert cpu_features("model name : old\nflags : fpu sse2\n") == []
    here = machine_info()["cpu_features"]
    assert set(here) <= set(SPEED_RELEVANT_CPU_FLAGS) and here == cpu_features()


def test_machine_label_names_the_widest_instruction_set():
    def label(features):
        return machine_label({"cpu": "AMD EPYC", "cores": 2, "cpu_features": features})

    assert label(["avx2", "fma", "avx512f", "avx512_bf16"]) == "AMD EPYC (2 cores, AVX512_BF16)"
    assert label(["avx2", "fma", "avx512f"]) == "AMD EPYC (2 cores, AVX-512)"
    assert label(["avx2", "fma"]) == "AMD EPYC (2 cores, AVX2)"
    assert label(["asimd"]) == "AMD EPYC (2 cores, NEON)"
    assert label([]) == "AMD EPYC (2 cores, no AVX2)"
    # cells computed before manifests kept the features
    assert machine_label({"cpu": "AMD EPYC", "cores": 2}) == "AMD EPYC (2 cores, instruction set not recorded)"
