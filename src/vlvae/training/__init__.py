"""Training: the three stages of the paper (VLVAE, text posteriors, aggregate prior) and run folders."""
