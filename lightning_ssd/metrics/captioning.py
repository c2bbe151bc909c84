"""COCO caption scores (BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE) with pycocoevalcap, gathered over DDP ranks.

Scores are pycocoevalcap's values x100, as in the captioning tables of papers (CIDEr 1.2 -> 120.0).
BLEU is corpus-level and CIDEr-D takes its document frequencies from the references of the evaluated
set, so neither is an average of per-rank scores: every rank gathers all samples and scores the union.
"""

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import get_stanford_models as spice_models
from pycocoevalcap.spice.spice import Spice
from pycocoevalcap.tokenizer import ptbtokenizer

from lightning_ssd.metrics._text_records import TextRecordMetric

log = logging.getLogger(__name__)

_PTB_JAR = Path(ptbtokenizer.__file__).parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
_PYCOCOEVALCAP_DIR = _PTB_JAR.parents[1]

Captions = dict[int, list[str]]


def spice_jars(lib_dir: Path | None = None) -> list[Path]:
    """The Stanford CoreNLP jars that pycocoevalcap's SPICE needs (it downloads them on first use otherwise)."""
    lib_dir = lib_dir or Path(spice_models.SPICEDIR) / spice_models.SPICELIB
    return [lib_dir / f"{spice_models.JAR}.jar", lib_dir / f"{spice_models.JAR}-models.jar"]


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Tokenizes like pycocoevalcap's ``PTBTokenizer``: same CoreNLP jar, flags and punctuation removal.

    The text goes through stdin instead of the temp file that ``PTBTokenizer`` writes next to its jar, so
    scoring also works when site-packages is read-only, and the line count is checked (a stray line break
    would silently shift every later caption onto the wrong image).
    """
    if shutil.which("java") is None:
        raise RuntimeError("CaptionScores needs Java for pycocoevalcap's PTB tokenizer: `java` is not on PATH")
    # PTB treats any line break (\r, \x0b, \u2028...) as a new line: collapse all whitespace to single spaces.
    lines = [" ".join(text.split()) for text in texts]
    cmd = ["java", "-cp", str(_PTB_JAR), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    proc = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, encoding="utf-8")
    out = proc.stdout.split("\n")[:-1]
    if proc.returncode != 0 or len(out) != len(lines):
        raise RuntimeError(
            f"PTB tokenizer ({_PTB_JAR}) exited with {proc.returncode} and returned {len(out)} lines for "
            f"{len(lines)} captions: {proc.stderr.strip()[-500:]}"
        )
    punctuation = set(ptbtokenizer.PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in punctuation) for line in out]


def _meteor(gts: Captions, res: Captions) -> float:
    if shutil.which("java") is None:
        raise FileNotFoundError("`java` is not on PATH")
    meteor = Meteor()
    try:
        return meteor.compute_score(gts, res)[0]
    finally:
        # Meteor keeps its lock when compute_score raises (e.g. the JVM died), and its __del__ then waits forever.
        if meteor.lock.locked():
            meteor.lock.release()


def _spice(gts: Captions, res: Captions) -> float:
    return float(Spice().compute_score(gts, res)[0])


class CaptionScores(TextRecordMetric):
    """COCO caption metrics over (prediction, references) pairs, correct under DDP.

    Predictions and references are kept as UTF-8 byte tensors gathered with ``cat``, so ``compute()`` on
    every rank tokenizes (PTB, as pycocoevalcap) and scores all samples of all ranks. Java is needed.

    Args:
        meteor: score METEOR (starts a JVM, ~8 s). If it fails (no Java, JVM crash, unwritable
            directory), METEOR is left out, a warning is logged and the reason is kept in ``unavailable``.
        spice: score SPICE where the Stanford CoreNLP 3.6.0 jars it needs are already in pycocoevalcap's
            ``spice/lib`` (pycocoevalcap would download them, which fails offline). Without them
            ``spice_available`` is False, a warning is logged and SPICE is left out of the result, never
            reported as 0. SPICE is slow and asks for an 8 GB Java heap (pycocoevalcap runs it with -Xmx8G).
        **kwargs: passed to ``torchmetrics.Metric`` (``sync_on_compute``, ``process_group``, ...).

    Example:
        >>> metric = CaptionScores(meteor=False, spice=False)
        >>> metric.update(["a cat on a mat"], [["a cat sits on a mat", "a cat on the mat"]])
        >>> sorted(metric.compute())
        ['BLEU-1', 'BLEU-2', 'BLEU-3', 'BLEU-4', 'CIDEr', 'ROUGE-L']
    """

    def __init__(self, meteor: bool = True, spice: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meteor = meteor
        self.spice_available = spice and all(jar.is_file() for jar in spice_jars())
        #: metric name -> why it is missing from ``compute()``'s result.
        self.unavailable: dict[str, str] = {}
        if spice and not self.spice_available:
            self.unavailable["SPICE"] = f"Stanford CoreNLP jars not found: {', '.join(map(str, spice_jars()))}"
            log.warning("SPICE is not scored: %s", self.unavailable["SPICE"])

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:
        """Adds predicted captions and, for each, its list of reference captions (at least one)."""
        if isinstance(preds, str):
            raise TypeError("CaptionScores.update: preds must be a list of captions, not one string")
        if len(preds) != len(targets):
            raise ValueError(f"CaptionScores.update: {len(preds)} predictions but {len(targets)} reference lists")
        for i, refs in enumerate(targets):
            if isinstance(refs, str) or not refs:
                raise ValueError(
                    f"CaptionScores.update: targets[{i}] must be a non-empty list of captions, got {refs!r}"
                )
        self._append_records([[pred, *refs] for pred, refs in zip(preds, targets, strict=True)])

    def compute(self) -> dict[str, float]:
        """Returns ``BLEU-1``..``BLEU-4``, ``METEOR``, ``ROUGE-L``, ``CIDEr`` and ``SPICE`` (x100); see class doc."""
        records = self._records()
        if not records:
            raise ValueError("CaptionScores.compute: no samples; call update() with predictions and references first")
        texts = ptb_tokenize([text for record in records for text in record])
        gts: Captions = {}
        res: Captions = {}
        start = 0
        for i, record in enumerate(records):
            res[i] = [texts[start]]
            gts[i] = texts[start + 1 : start + len(record)]
            start += len(record)

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores: dict[str, float | None] = {f"BLEU-{n + 1}": b for n, b in enumerate(bleu)}
        if self.meteor:
            scores["METEOR"] = self._try(_meteor, "METEOR", gts, res)
        scores["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
        scores["CIDEr"] = Cider().compute_score(gts, res)[0]
        if self.spice_available:
            scores["SPICE"] = self._try(_spice, "SPICE", gts, res)
        return {name: 100.0 * float(value) for name, value in scores.items() if value is not None}

    def _try(
        self, scorer: Callable[[Captions, Captions], float], name: str, gts: Captions, res: Captions
    ) -> float | None:
        try:
            value = scorer(gts, res)
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            self.unavailable[name] = f"{type(err).__name__}: {err} (pycocoevalcap at {_PYCOCOEVALCAP_DIR})"
            log.warning("%s is not scored: %s", name, self.unavailable[name])
            return None
        self.unavailable.pop(name, None)
        return value
