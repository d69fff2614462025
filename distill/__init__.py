"""distill: contrastive training and IR evaluation of compact encoders from synthgen's training records."""

__version__ = "0.1.0"
