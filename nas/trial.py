"""NNI's trial command (see nas/README.md): trains and scores one candidate imitation network."""

from lightning_ssd.nas.trial import main

if __name__ == "__main__":
    main()
