"""Entry point: `python train.py [overrides]` (Hydra). See README.md."""

from blockprune.main import main

if __name__ == "__main__":
    main()
