"""Classic baselines (installed as fer_bench.baselines): HOG+SVM and logistic regression on pixels."""
