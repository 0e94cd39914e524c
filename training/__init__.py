"""DFI training package: what makes the models, one subpackage per pipeline stage (layers from the bottom up:
core, datasets, gan, classifiers, inversion, evaluation, editing | scgan | cyclic, export, reports, cli), run as
`python -m training` (the command table is training/cli/app.py). The README's layout section lists each package."""
