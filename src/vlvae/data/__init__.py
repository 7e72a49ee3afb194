"""Data sets (Two Objects, CelebA), their vocabulary and their on-disk format."""
