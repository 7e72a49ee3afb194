"""Recipes: whole jobs that train and then evaluate, in order (the floor just below the CLI).

* :mod:`vlvae.recipes.reproduce`: ``vlvae reproduce``, from nothing to the report.
* :mod:`vlvae.recipes.figure1`: ``vlvae figure latent2d``, Fig. 1's z = 2 run and its figure.
"""
