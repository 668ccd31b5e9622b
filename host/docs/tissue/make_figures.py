"""Figures and numbers of host/docs/tissue/README.md (run: python host/docs/tissue/make_figures.py).

Needs only the host's runtime dependencies (numpy, OpenCV, scikit-image for the
real IHC image). It also renders a simulated H&E field at 20x
(the optics simulator) and does the same analysis on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from deepaf_host import tissue
from skimage import data

HERE = Path(__file__).resolve().parent
REGIONS = {  # hand-picked boxes of skimage's immunohistochemistry() image
    "glass": np.s_[310:460, 0:30],
    "DAB epithelium": np.s_[50:200, 50:200],
    "pale stroma": np.s_[250:330, 150:250],
}
COLOURS = {"glass": (90, 90, 90), "DAB epithelium": (30, 90, 200), "pale stroma": (200, 120, 40)}


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _gray3(x: np.ndarray) -> np.ndarray:
    g = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _histogram(values: dict[str, np.ndarray], title: str, thr: float, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    bins = 64
    top = 36
    hists = {k: np.histogram(v, bins=bins, range=(0, 1), density=True)[0] for k, v in values.items()}
    peak = max(float(x.max()) for x in hists.values())
    for k, hist in hists.items():
        pts = [(int(i * (w - 1) / (bins - 1)), int(h - 20 - (h - 20 - top) * v / peak)) for i, v in enumerate(hist)]
        cv2.polylines(img, [np.array(pts, np.int32)], False, COLOURS[k], 2, cv2.LINE_AA)
    x_thr = int(thr * (w - 1))
    cv2.line(img, (x_thr, top), (x_thr, h - 20), (0, 0, 0), 1)
    cv2.putText(img, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, k in enumerate(values):
        cv2.putText(img, k, (w - 170, 50 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLOURS[k], 1, cv2.LINE_AA)
    cv2.putText(img, "0", (2, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "1", (w - 12, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return img


def blank_from(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(rgb[None, None, :] + rng.normal(0, 3.0, (*shape, 3)), 0, 255).astype(np.uint8)


def analyse(name: str, frame: np.ndarray, blank: np.ndarray, regions: dict[str, np.ndarray | tuple[slice, slice]] | None) -> list[str]:
    th = tissue.calibrate(blank)
    v, s = tissue.value_saturation(frame)
    mask = tissue.tissue_mask(frame, th)
    overlay = frame.copy()
    overlay[~mask] = (overlay[~mask] * 0.35 + np.array([0, 0, 255]) * 0.65).astype(np.uint8)
    panels = [_label(frame, "RGB"), _label(_gray3(v), "HSV value"), _label(_gray3(s), "HSV saturation"),
              _label(overlay, f"glass (blue), tissue {tissue.tissue_fraction(mask):.0%}")]
    row = np.concatenate([cv2.resize(p, (384, int(384 * frame.shape[0] / frame.shape[1]))) for p in panels], axis=1)
    thresholds = (
        f"- calibrated thresholds: V < {th.value_max:.3f} or S > {th.saturation_min:.3f} "
        f"(blurred {th.blur_px} px); eq. 1 tau = {th.mean_value_max:.3f}"
    )
    means = (
        f"- frame mean V = {tissue.mean_value(frame):.3f}, blank mean V = {tissue.mean_value(blank):.3f}; "
        f"tissue fraction = {tissue.tissue_fraction(mask):.3f}"
    )
    lines = [f"### {name}", "", thresholds, means]
    if regions:
        vb = cv2.blur(v, (th.blur_px, th.blur_px))
        sb = cv2.blur(s, (th.blur_px, th.blur_px))
        by_v, by_s = vb < th.value_max, sb > th.saturation_min
        header = "| region | median V | median S | tissue: V test alone | S test alone | both (the mask) |"
        lines += ["", header, "| --- | --- | --- | --- | --- | --- |"]
        for k, sl in regions.items():
            lines.append(f"| {k} | {np.median(v[sl]):.3f} | {np.median(s[sl]):.3f} | {by_v[sl].mean():.1%} | "
                         f"{by_s[sl].mean():.1%} | {mask[sl].mean():.1%} |")
        hist_v = _histogram({k: vb[sl].ravel() for k, sl in regions.items()}, "blurred V", th.value_max, (260, 768))
        hist_s = _histogram({k: sb[sl].ravel() for k, sl in regions.items()}, "blurred S", th.saturation_min, (260, 768))
        row = np.concatenate([row, np.concatenate([hist_v, hist_s], axis=1)], axis=0)
    out = HERE / f"{name.lower().replace(' ', '_').replace('&', 'and')}.png"
    cv2.imwrite(str(out), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    lines.append(f"\n![{name}]({out.name})\n")
    return lines


def simulated_field() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 20x low-res frame of the virtual slide on the tissue's edge, one of blank glass,
    and the glass mask of the first (from the slide's in-focus transmission)."""
    from deepaf_host.optics.render import Renderer
    from deepaf_host.optics.slide import VirtualSlide

    slide = VirtualSlide(seed=0)
    renderer = Renderer("20x", "low")
    x, y = -30025.0, -15572.0  # on the upper edge of the section (demo area)
    field = renderer.render(slide, x, y, float(slide.focus_z_um(x, y)), rng=1)
    truth = slide.region(x, y, renderer.shape, renderer.pixel_um, renderer.protocol)
    glass = truth.transmission.min(axis=2) > 0.97
    bx, by = -50000.0, -20000.0  # no tissue here
    blank = renderer.render(slide, bx, by, float(slide.focus_z_um(bx, by)), rng=2)
    return field, blank, glass


def main() -> None:
    ihc = data.immunohistochemistry()
    glass_rgb = np.median(ihc[REGIONS["glass"]].reshape(-1, 3), axis=0)
    lines = analyse("IHC real", ihc, blank_from(glass_rgb, ihc.shape[:2]), REGIONS)
    lines.append("")
    field, blank, glass = simulated_field()
    # Ground truth from the slide: glass where the in-focus transmission is clear.
    COLOURS["H&E tissue"] = (200, 60, 160)
    lines += analyse("H&E simulated", field, blank, {"glass": glass, "H&E tissue": ~glass})
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
