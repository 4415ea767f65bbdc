"""Classic baselines (installed as fer_bench.baselines): HOG+SVM, a bag of visual words with an SVM, and logistic
regression on pixels."""
