"""`python -m distill ...`, which is what `torchrun --nproc_per_node N -m distill train recipe.yaml` runs on each rank."""

from distill.cli import main

if __name__ == "__main__":
    main()
