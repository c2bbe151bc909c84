"""NNI architecture search for the imitation network: `python nas/search.py run|resume|view|export ...`.

The logic lives in `lightning_ssd.nas.search` (see its docstring and nas/README.md); this file is the entry point.
"""

from lightning_ssd.nas.search import main

if __name__ == "__main__":
    main()
