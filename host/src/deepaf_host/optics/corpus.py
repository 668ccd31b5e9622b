"""A small corpus of real, in-focus H&E brightfield images, with their provenance.

What it is
    The focal-stack simulator renders defocus from an in-focus specimen image. Procedural
    tissue is useful but it is not real tissue; this corpus holds a few real H&E images
    taken from public, permissively licensed data sets (CC0, CC-BY 4.0, or an explicit
    "free to use and distribute" grant). Non-commercial (NC) or unlicensed images are
    never used.

Where the images are
    ``manifest.json`` (package data, ``deepaf_host/data/specimens/``) lists every image.
    Only the images marked ``"shipped": true`` are files of the package (their bytes came
    from a package registry); the others are NOT committed or installed: they live in a
    per-user cache, ``$DEEPAF_CORPUS_DIR`` if set, else ``$XDG_CACHE_HOME/deepaf/specimens``
    (``~/.cache/deepaf/specimens``), and ``deepaf-host corpus fetch`` downloads them from
    the public repository and commit the manifest records
    (``https://raw.githubusercontent.com/{repository}/{commit}/{path}``; the base is
    ``$DEEPAF_CORPUS_URL`` when set), checking each file's sha256. A file is looked for
    beside the manifest first, then in the cache. :func:`read_image` of an image that is
    in neither raises :class:`CorpusImageMissing`, which names the command to run:
    a split is never silently used in part.

Why it is split by image and by source
    A network trained on stacks rendered from one image and scored on stacks rendered
    from another crop of the same image (or the same slide, lab and stain) is scored on
    tissue it has already seen. Each file therefore belongs to exactly one split,
    ``train`` or ``heldout``, and the split is made by source/organ where the corpus
    allows it, so held-out images come from tissue, scanner and lab not in training.

How provenance is recorded
    ``manifest.json`` lists every file with its sha256 (of the ORIGINAL bytes: files are
    copied unchanged, never re-encoded), size, the specimen pixel size and where that
    number comes from (``declared: ...`` by the source, or ``estimated from nucleus
    size``), organ/tissue, the data set and its citation, the public repository, path
    and 40-hex commit the bytes are taken from, the licence and the file/line or page
    that states it. ``README.md`` beside it gives the attribution the licences ask for.
    :func:`read_image` refuses a file whose bytes no longer match the manifest.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetError

#: Where the manifest and the shipped files live (installed with the package as package data).
CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "specimens"
MANIFEST = CORPUS_DIR / "manifest.json"

SPLITS = ("train", "heldout", "all")

#: Environment variables: the cache folder, and the base URL the files are fetched from.
CACHE_ENV = "DEEPAF_CORPUS_DIR"
URL_ENV = "DEEPAF_CORPUS_URL"
#: A file's URL is ``{base}/{repository}/{commit}/{path}`` (raw files of a GitHub commit).
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
FETCH_COMMAND = "deepaf-host corpus fetch"

#: Assumed median equivalent diameter of H&E nuclei in a tissue field, in micrometres.
#: Basis: small lymphocyte nuclei are about 5-7 um across, fibroblast/endothelial nuclei
#: (elongated) have an area-equivalent diameter of about 5-7 um and epithelial / tumour
#: nuclei 7-12 um; in a mixed field the median of the segmented objects sits near 7 um.
#: Segmentation on a 20x image merges touching nuclei and misses pale ones, so this is a
#: rough prior: expect errors of tens of percent on real tissue (see the corpus README).
DEFAULT_NUCLEUS_DIAMETER_UM = 7.0


class CorpusImageMissing(DatasetError):
    """A corpus image is neither beside the manifest nor in the cache: it has to be fetched."""

    def __init__(self, path: str, image_id: str, split: str) -> None:
        self.image_id = image_id
        self.split = split
        super().__init__(
            path,
            f"corpus image {image_id!r} ({split}) is not on this machine: it is not shipped with the package; "
            f"download it with `{FETCH_COMMAND} --split {split}` (into {cache_dir()})",
        )


class CorpusDownloadError(DatasetError):
    """A corpus file could not be downloaded (no network, refused, HTTP error); nothing was written."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(url, reason)
        self.args = (f"cannot download {url}: {reason}",)


class CorpusChecksumError(DatasetError):
    """A downloaded corpus file does not have the sha256 of the manifest; it was deleted."""

    def __init__(self, url: str, image_id: str, got: str, expected: str) -> None:
        self.url = url
        self.image_id = image_id
        self.got = got
        self.expected = expected
        super().__init__(url, f"has sha256 {got}, the manifest says {expected}")
        self.args = (f"corpus image {image_id!r} downloaded from {url} has sha256 {got}, the manifest says {expected}; "
                     "the download was deleted",)


def cache_dir() -> Path:
    """The per-user folder of the fetched corpus files (need not exist yet)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "deepaf" / "specimens"


def base_url() -> str:
    """Where the corpus files are fetched from: ``$DEEPAF_CORPUS_URL`` or raw.githubusercontent.com."""
    return (os.environ.get(URL_ENV, "").strip() or DEFAULT_BASE_URL).rstrip("/")


@dataclass(frozen=True)
class CorpusImage:
    """One image of the corpus and its provenance (one entry of ``manifest.json``).

    ``path`` is where the file is on this machine: beside the manifest when it is there
    (shipped files), else in :func:`cache_dir` (where ``corpus fetch`` puts it; the file
    may not exist yet, see :attr:`present`).
    """

    id: str
    path: Path
    pixel_um: float
    pixel_um_source: str
    split: str
    sha256: str
    licence: str
    licence_evidence: str
    width: int
    height: int
    organ: str = ""
    tissue: str = ""
    source: str = ""
    repository: str = ""
    repo_path: str = ""
    commit: str = ""
    shipped: bool = False

    @property
    def present(self) -> bool:
        return Path(self.path).is_file()

    def url(self, base: str | None = None) -> str:
        """The public URL of the original bytes, from the manifest's repository, commit and path."""
        if not (self.repository and self.commit and self.repo_path):
            raise DatasetError(str(MANIFEST), f"image {self.id!r} has no repository, commit and path to fetch it from")
        root = (base_url() if base is None else base).rstrip("/")
        quoted = "/".join(urllib.parse.quote(part, safe="") for part in (*self.repository.split("/"), self.commit,
                                                                          *self.repo_path.split("/")))
        return f"{root}/{quoted}"


def _locate(file: str, base: Path) -> Path:
    """Beside the manifest if the file is there, else its place in the cache."""
    if Path(file).name != file or file in ("", ".", ".."):
        raise DatasetError(str(base / "manifest.json"), f"corpus file name {file!r} must be a plain file name")
    beside = base / file
    return beside if beside.is_file() else cache_dir() / file


def _entry_to_image(entry: object, base: Path) -> CorpusImage:
    if not isinstance(entry, dict):
        raise DatasetError(str(base / "manifest.json"), f"malformed entry {entry!r}: not a JSON object")
    try:
        return CorpusImage(
            id=str(entry["id"]),
            path=_locate(str(entry["file"]), base),
            pixel_um=float(entry["pixel_um"]),
            pixel_um_source=str(entry["pixel_um_source"]),
            split=str(entry["split"]),
            sha256=str(entry["sha256"]).lower(),
            licence=str(entry["licence"]),
            licence_evidence=str(entry["licence_evidence"]),
            width=int(entry["width"]),
            height=int(entry["height"]),
            organ=str(entry.get("organ", "")),
            tissue=str(entry.get("tissue", "")),
            source=str(entry.get("source", "")),
            repository=str(entry.get("repository", "")),
            repo_path=str(entry.get("path", "")),
            commit=str(entry.get("commit", "")),
            shipped=entry.get("shipped", False) is True,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(str(base / "manifest.json"), f"malformed entry {entry.get('id', '?')!r}: {exc}") from exc


def load_manifest(manifest: Path | None = None) -> list[CorpusImage]:
    """Every image of the corpus, in manifest order."""
    path = MANIFEST if manifest is None else Path(manifest)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(str(path), "the specimen manifest is missing") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(str(path), f"the specimen manifest is not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise DatasetError(str(path), "the specimen manifest must be a JSON list")
    images = [_entry_to_image(e, path.parent) for e in entries]
    for img in images:
        if img.split not in ("train", "heldout"):
            raise DatasetError(str(path), f"image {img.id!r} has split {img.split!r}, not 'train' or 'heldout'")
    return images


def corpus_images(split: str, manifest: Path | None = None) -> list[CorpusImage]:
    """The images of one split: ``"train"``, ``"heldout"`` or ``"all"`` (present or not)."""
    if split not in SPLITS:
        raise ConfigError("specimen", f"unknown corpus split {split!r}; expected one of {', '.join(SPLITS)}")
    images = load_manifest(manifest)
    return images if split == "all" else [img for img in images if img.split == split]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_image(
    img: CorpusImage,
    *,
    base: str | None = None,
    timeout_s: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[Path, bool]:
    """Make sure ``img`` is on this machine; download it into the cache when it is not.

    Returns ``(path, downloaded)``. A file already beside the manifest or in the cache
    with the right sha256 is kept (``downloaded`` False); a cached file with other bytes
    is replaced. The download goes to a temporary file in the cache folder, its sha256 is
    checked, and only then is it renamed into place, so an interrupted or refused
    download leaves nothing behind. ``progress(bytes_done, bytes_total_or_None)`` is
    called as bytes arrive.

    Raises :class:`CorpusDownloadError` (network, HTTP) and :class:`CorpusChecksumError`
    (bytes differ from the manifest); ``DatasetError`` when the cache cannot be written.
    """
    current = Path(img.path)
    if current.is_file():
        if _sha256(current) == img.sha256:
            return current, False
        if img.shipped or current.parent != cache_dir():
            raise DatasetError(str(current), f"corpus image {img.id!r} has other bytes than the manifest says; reinstall the package")
    url = img.url(base)
    dest = cache_dir() / current.name
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DatasetError(str(dest.parent), f"cannot write the corpus cache: {exc}") from exc
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "deepaf-host corpus fetch"})
                with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # the manifest names the file
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    done = 0
                    if progress is not None:
                        progress(0, total)
                    while block := resp.read(1 << 16):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            except urllib.error.HTTPError as exc:
                exc.close()  # the error holds the response: close its socket
                raise CorpusDownloadError(url, f"HTTP {exc.code} {exc.reason}") from None
            except urllib.error.URLError as exc:
                raise CorpusDownloadError(url, str(exc.reason)) from exc
            except (http.client.HTTPException, TimeoutError, ConnectionError, ValueError) as exc:
                raise CorpusDownloadError(url, str(exc) or type(exc).__name__) from exc
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != img.sha256:
            raise CorpusChecksumError(url, img.id, digest, img.sha256)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest, True


def read_image(img: CorpusImage) -> np.ndarray:
    """The image as an RGB uint8 array (H, W, 3), after checking its sha256.

    Raises :class:`CorpusImageMissing` (a ``DatasetError`` naming ``deepaf-host corpus
    fetch``) when the file is not on this machine, and ``DatasetError`` naming the file
    when its bytes do not match the manifest or it cannot be decoded.
    """
    from PIL import Image  # imported here: only the simulator reads the corpus

    path = Path(img.path)
    if not path.is_file():
        raise CorpusImageMissing(str(path), img.id, img.split)
    digest = _sha256(path)
    if digest != img.sha256:
        raise DatasetError(str(path), f"corpus image {img.id!r} has sha256 {digest}, the manifest says {img.sha256}")
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        # libtiff in Pillow rejects some JPEG-in-TIFF files (OME-TIFF written by
        # Bio-Formats with JFIF tiles); decode those tile by tile.
        try:
            rgb = _read_jpeg_tiled_tiff(path)
        except (OSError, ValueError) as exc2:
            raise DatasetError(str(path), f"corpus image {img.id!r} cannot be decoded: {exc}; {exc2}") from exc2
    if (rgb.shape[1], rgb.shape[0]) != (img.width, img.height):
        raise DatasetError(
            str(path), f"corpus image {img.id!r} is {rgb.shape[1]}x{rgb.shape[0]}, the manifest says {img.width}x{img.height}"
        )
    return np.ascontiguousarray(rgb)


def _read_jpeg_tiled_tiff(path: Path) -> np.ndarray:
    """First page of a tiled, JPEG-compressed RGB TIFF, each tile decoded by Pillow."""
    import io

    import tifffile
    from PIL import Image

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]  # the first page is always read in full (a TiffPage, not a TiffFrame)
        if not isinstance(page, tifffile.TiffPage) or page.compression != 7 or not page.is_tiled:
            raise ValueError("not a tiled JPEG TIFF")
        h, w = page.shape[:2]
        th, tw = page.tilelength, page.tilewidth
        out = np.zeros((h, w, 3), np.uint8)
        cols = -(-w // tw)
        tables = page.jpegtables
        fh = tif.filehandle
        for i, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
            fh.seek(offset)
            data = fh.read(count)
            if tables is not None:
                data = bytes(tables[:-2]) + data[2:]
            with Image.open(io.BytesIO(data)) as tile_im:
                tile = np.asarray(tile_im.convert("RGB"), dtype=np.uint8)
            r0, c0 = (i // cols) * th, (i % cols) * tw
            hh, ww = min(th, h - r0), min(tw, w - c0)
            out[r0 : r0 + hh, c0 : c0 + ww] = tile[:hh, :ww]
    return out


def nucleus_diameters_px(rgb: np.ndarray) -> np.ndarray:
    """Equivalent diameters (pixels) of the nucleus-like objects of an H&E image.

    Colour deconvolution (Ruifrok & Johnston, ``skimage.color.rgb2hed``), the
    hematoxylin channel smoothed (Gaussian, sigma 2 px), an Otsu threshold, holes filled, objects
    touching the border and specks under 3x3 px dropped, and clumps (solidity < 0.8,
    usually merged nuclei) dropped.
    """
    from scipy import ndimage as ndi
    from skimage.color import rgb2hed
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] < 3:
        raise ConfigError("specimen", f"expected an RGB image (H, W, 3), got shape {a.shape}")
    hema = rgb2hed(a[..., :3])[..., 0]
    hema = ndi.gaussian_filter(hema, 2.0)
    if float(hema.max() - hema.min()) <= 1e-9:
        return np.zeros(0)
    mask = hema > threshold_otsu(hema)
    mask = ndi.binary_fill_holes(mask)
    labels = label(mask)
    h, w = mask.shape
    out = []
    for r in regionprops(labels):
        if r.area < 9:
            continue
        r0, c0, r1, c1 = r.bbox
        if r0 == 0 or c0 == 0 or r1 == h or c1 == w:
            continue
        if r.solidity < 0.8:
            continue
        out.append(r.equivalent_diameter_area)
    return np.asarray(out, dtype=float)


def estimate_pixel_um(rgb: np.ndarray, nucleus_diameter_um: float = DEFAULT_NUCLEUS_DIAMETER_UM) -> float:
    """Estimate the specimen pixel size (um/px) of an H&E image from its nuclei.

    ``nucleus_diameter_um / median(equivalent diameter in px)`` over the largest quarter
    (by area) of the objects that :func:`nucleus_diameters_px` segments: the smaller
    ones are mostly fragments, pale or tangentially cut nuclei and debris, which
    otherwise pull the median down by a factor of 2-4. Checked on the two corpus images
    with a declared pixel size: 0.513 vs 0.5 um/px (+3%) and 0.256 vs 0.227 um/px
    (+13%); the top-quartile rule was chosen on those same two images, so treat it as
    a rough estimate, not a measurement (see
    ``DEFAULT_NUCLEUS_DIAMETER_UM``); use a declared pixel size wherever a source has one.
    Raises ``ConfigError`` when no nucleus is found.
    """
    if not nucleus_diameter_um > 0:
        raise ConfigError("specimen", f"nucleus diameter must be positive, got {nucleus_diameter_um}")
    d = nucleus_diameters_px(rgb)
    if d.size == 0:
        raise ConfigError("specimen", "no nucleus-like objects found; cannot estimate the pixel size")
    largest = d[d >= np.percentile(d, 75)]
    return float(nucleus_diameter_um / np.median(largest))
