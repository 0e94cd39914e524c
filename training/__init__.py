"""DFI training package: data sets, the GAN zoo, classifiers and the training CLI (`python -m training`)."""
