"""Training: fitting the three stages of the paper (VLVAE, text posteriors, aggregate prior).

Run folders, weights and the loaders of trained stages are :mod:`vlvae.runs`'s.
"""
