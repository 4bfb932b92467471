"""The data a model learns from: the IDX format, the download from mirrors, and the
prepared splits the training reads."""
