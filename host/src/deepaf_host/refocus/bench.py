"""Refocus figures: PSNR and SSIM of input and output against the true in-focus render,
per 1 um bin of |dz| from 0 to 10 um, on held-out real images and unseen procedural
slides; time per 1280 x 720 frame; seams of the tiling; a figure (input / output / truth).

    python -m deepaf_host.refocus.bench [--model models/deepaf-refocus-20x.tflite] [--float F.tflite]
    python -m deepaf_host.refocus.bench --two-shot [models/deepaf-tsva-20x.tflite] [--two-shot-compare M2.tflite ...]

Test fields: the corpus's ``heldout`` images (five Kather / CRC-VAL tiles, never in
training) and procedural slides of seed 5001 (slide seeds disjoint from the training
sets' 101, 102 and the validation set's 103), each under the training lab (``same``) and
random labs (every other slide). Each field is rendered at dz = 0 and at one dz in each
bin [k, k+1) um, k = 0..9, of random sign; frames are 256 x 256 low-res pixels, refocused
by the runtime exactly as the command does (tiled, guard on unless --no-guard).
With ``--two-shot`` every frame (the tile) also has its second shot 1 um above it (+Z,
as the scan takes it; above or below at random when every two-shot model given was
trained on either side, card ``second_side``), and the single-image model and the two-shot model are scored on the same tiles; the
sharper of the two shots is scored as well (what picking the better shot alone gives).
Prints figures; asserts nothing (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .card import DEFAULT_TWO_SHOT_MODEL, TWO_SHOT_SEPARATION_UM
from .metrics import order_shots, psnr, ssim
from .pairs import iter_pair_sets
from .runtime import RefocusModel, default_refocus_model_path

BINS = list(range(10))
DOCS = Path(__file__).resolve().parents[3] / "docs" / "refocus"


def test_dz(rng: np.random.Generator) -> np.ndarray:
    """dz = 0, then one dz in each 1 um bin of |dz| (random sign)."""
    mags = np.array([k + rng.uniform(0.05, 0.95) for k in BINS])
    return np.round(np.concatenate([[0.0], mags * rng.choice([-1.0, 1.0], len(mags))]), 3)


def evaluate(models: dict[str, RefocusModel], specimen: str, seed: int, slides: int, fields: int, size: int,
             guard: bool = True) -> dict[str, Any]:
    """Per-plane records: |dz|, SSIM/PSNR of the input and of each model's output (and,
    when a model takes two shots, of the sharper shot)."""
    two = any(m.shots == 2 for m in models.values())
    separation = TWO_SHOT_SEPARATION_UM if two else None
    # Shots on either side only when every two-shot model was trained on both.
    either = all(m.card.second_side == "either" for m in models.values() if m.shots == 2)
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng([seed, 99])
    for ps in iter_pair_sets(seed=seed, slides=slides, fields_per_slide=fields, planes_per_field=0, specimen=specimen,
                             labs="mixed", shape=(size, size), dz_fixed=test_dz(rng), range_um=10.0,
                             separation_um=separation, second_side="either" if either else "above"):
        for k, dz in enumerate(ps.dz_um):
            frame = ps.inputs[k, 0] if two else ps.inputs[k]
            second = ps.inputs[k, 1] if two else None
            row: dict[str, Any] = {"dz": float(dz), "lab": ps.lab, "specimen": ps.specimen,
                                   "ssim_in": ssim(frame, ps.truth), "psnr_in": psnr(frame, ps.truth)}
            if second is not None and ps.second_dz_um is not None:
                sharper = order_shots(frame, second)[0]
                row.update(second_dz=float(ps.second_dz_um[k]), ssim_sharper=ssim(sharper, ps.truth),
                           psnr_sharper=psnr(sharper, ps.truth))
            for name, m in models.items():
                res = m.refocus(frame, guard=guard, second=second if m.shots == 2 else None)
                row[f"ssim_{name}"] = ssim(res.image, ps.truth)
                row[f"psnr_{name}"] = psnr(res.image, ps.truth)
                row[f"ssim_{name}_net"] = ssim(res.network, ps.truth)
                row[f"pass_{name}"] = res.passed_through
                row[f"ratio_{name}"] = res.detail_ratio
            rows.append(row)
    return {"rows": rows}


def table(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    if rows and "ssim_sharper" in rows[0]:
        names = ["sharper", *names]  # the sharper of the two shots, as it is
    head = "| abs dz (um) | n | SSIM in | " + " | ".join(f"SSIM {n}" for n in names) + " | PSNR in | " + \
        " | ".join(f"PSNR {n}" for n in names) + " |"
    out = [head, "|" + " --- |" * (3 + 2 * len(names) + 1)]

    def line(label: str, sel: list[dict[str, Any]]) -> str:
        cells = [label, str(len(sel)), f"{np.mean([r['ssim_in'] for r in sel]):.3f}"]
        cells += [f"{np.mean([r[f'ssim_{n}'] for r in sel]):.3f}" for n in names]
        cells += [f"{np.mean([r['psnr_in'] for r in sel]):.1f}"]
        cells += [f"{np.mean([r[f'psnr_{n}'] for r in sel]):.1f}" for n in names]
        return "| " + " | ".join(cells) + " |"

    out.append(line("0 (in focus)", [r for r in rows if r["dz"] == 0.0]))
    for k in BINS:
        sel = [r for r in rows if r["dz"] != 0.0 and k <= abs(r["dz"]) < k + 1]
        if sel:
            out.append(line(f"{k}-{k + 1}", sel))
    return out


def bars(rows: list[dict[str, Any]], name: str) -> dict[str, float]:
    mid = [r for r in rows if 1.0 <= abs(r["dz"]) <= 5.0]
    focus = [r for r in rows if r["dz"] == 0.0]
    extra = {}
    if mid and "ssim_sharper" in mid[0]:
        extra["ssim_gain_over_sharper_shot_1_5um"] = float(np.mean([r[f"ssim_{name}"] - r["ssim_sharper"] for r in mid]))
    return {
        **extra,
        "ssim_gain_1_5um": float(np.mean([r[f"ssim_{name}"] - r["ssim_in"] for r in mid])),
        "in_focus_worst_change": float(min(r[f"ssim_{name}"] - r["ssim_in"] for r in focus)),
        "in_focus_worst_change_no_guard": float(min(r[f"ssim_{name}_net"] - r["ssim_in"] for r in focus)),
        "in_focus_passed_through": float(np.mean([r[f"pass_{name}"] for r in focus])),
        "defocused_passed_through_1_5um": float(np.mean([r[f"pass_{name}"] for r in mid])),
    }


def frame_timing(model: RefocusModel, repeat: int = 3) -> dict[str, float]:
    """Seconds per 1280 x 720 frame (2 threads) and the tiling's largest seam against one pass."""
    from ..optics import Renderer, VirtualSlide
    from ..optics.specimen import ProceduralTissue
    from .pairs import tissue_position

    slide = VirtualSlide(5003, ProceduralTissue(5003))
    x, y = tissue_position(slide, np.random.default_rng(0))
    renderer = Renderer("20x", "low", "same")
    z = float(slide.focus_z_um(x, y)) + 3.0
    frame = renderer.render(slide, x, y, z, rng=1)
    second = renderer.render(slide, x, y, z + TWO_SHOT_SEPARATION_UM, rng=2) if model.shots == 2 else None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.refocus(frame, second=second)
        times.append(time.perf_counter() - t0)
    seam = int(np.abs(model.network_tiled(frame, second).astype(int) - model.full_frame(frame, second)).max())
    return {"seconds_per_1280x720": float(np.median(times)), "max_seam_dn": seam}


def figure(model: RefocusModel, path: Path, seed: int = 5002, crop: int = 160) -> Path:
    """Rows: held-out real fields at a few dz; columns: input (and, two-shot, the second
    shot) / output / truth (the centre ``crop`` pixels of each 256 x 256 frame; SSIM of
    the whole frame)."""
    import cv2

    two = model.shots == 2
    dzs = np.array([-4.0, -2.0, 2.0, 4.0])
    tiles = []
    for ps in iter_pair_sets(seed=seed, slides=2, fields_per_slide=1, planes_per_field=0, specimen="corpus:heldout",
                             labs="same", shape=(256, 256), dz_fixed=dzs,
                             separation_um=TWO_SHOT_SEPARATION_UM if two else None,
                             second_side=model.card.second_side):
        for k, dz in enumerate(ps.dz_um):
            frame = ps.inputs[k, 0] if two else ps.inputs[k]
            out = model.refocus(frame, second=ps.inputs[k, 1] if two else None).image
            row = [frame, out, ps.truth]
            labels = [f"input {dz:+.0f} um, SSIM {ssim(frame, ps.truth):.2f}", f"output, SSIM {ssim(out, ps.truth):.2f}",
                      "truth: dz=0, noise-free"]
            if two and ps.second_dz_um is not None:
                row.insert(1, ps.inputs[k, 1])
                labels.insert(1, f"2nd shot {ps.second_dz_um[k]:+.0f} um, SSIM {ssim(ps.inputs[k, 1], ps.truth):.2f}")
            cells = []
            c0 = (256 - crop) // 2
            for img, text in zip(row, labels, strict=True):
                cell = np.full((crop + 20, crop, 3), 255, np.uint8)
                cell[20:] = img[c0 : c0 + crop, c0 : c0 + crop]
                cv2.putText(cell, text, (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
                cells.append(np.pad(cell, ((2, 2), (2, 2), (0, 0)), constant_values=255))
            tiles.append(np.concatenate(cells, axis=1))
    img = np.concatenate(tiles, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def guard_stats(model: RefocusModel, val_npz: str) -> dict[str, list[float]]:
    """Detail ratios (output / input fine detail) of in-focus (dz = 0) and defocused
    (|dz| >= 1 um) planes of a validation set (not the test sets): where the guard's
    threshold can sit. Percentiles 0, 5, 50, 95, 100."""
    z = np.load(val_npz)
    focus: list[float] = []
    blur: list[float] = []
    for f in range(len(z["dz_um"])):
        for p, dz in enumerate(z["dz_um"][f]):
            if dz == 0.0 or abs(dz) >= 1.0:
                r = model.refocus(z["inputs"][f, p], guard=False).detail_ratio
                (focus if dz == 0.0 else blur).append(r)
    q = [0, 5, 50, 95, 100]
    return {"in_focus": [round(float(v), 3) for v in np.percentile(focus, q)],
            "defocused_1um_plus": [round(float(v), 3) for v in np.percentile(blur, q)],
            "n": [len(focus), len(blur)]}


def high_res(model: RefocusModel, seed: int = 5004, fields: int = 6, size: int = 768) -> list[str]:
    """The command's path on high-res tiles (0.057 um, 3.2x finer than the model): each
    tile resampled to the model's pixel, refocused, interpolated back
    (``repair.repair_image``); SSIM against the noise-free high-res truth, per |dz|."""
    from .repair import repair_image

    rows: dict[float, list[tuple[float, float]]] = {}
    dzs = np.array([0.0, -1.5, 1.5, -3.0, 3.0, -4.5, 4.5])
    for ps in iter_pair_sets(seed=seed, slides=fields, fields_per_slide=1, planes_per_field=0, specimen="corpus:heldout",
                             labs="same", shape=(size, size), dz_fixed=dzs, mode="high"):
        for frame, dz in zip(ps.inputs, ps.dz_um, strict=True):
            out, _, _ = repair_image(model, frame, pixel_um=0.056985)
            rows.setdefault(abs(float(dz)), []).append((ssim(frame, ps.truth), ssim(out, ps.truth)))
    return [f"|dz| {k:.1f} um: SSIM in {np.mean([a for a, _ in v]):.3f} -> out {np.mean([b for _, b in v]):.3f} (n={len(v)})"
            for k, v in sorted(rows.items())]


def main() -> None:  # pragma: no cover - prints figures
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="int8 model [default: the shipped one]")
    ap.add_argument("--float", dest="float_model", default=None, help="the float32 export of the same run, to compare")
    ap.add_argument("--fields", type=int, default=2, help="fields per slide")
    ap.add_argument("--slides", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--no-guard", action="store_true")
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--figure-only", action="store_true", help="only write the figure")
    ap.add_argument("--high-only", action="store_true", help="only the high-res tiles through the command's path")
    ap.add_argument("--json", default=None, help="write the per-plane records here")
    ap.add_argument("--guard-stats", default=None, metavar="VAL_NPZ", help="only print the guard's detail ratios on VAL_NPZ")
    ap.add_argument("--two-shot", nargs="?", const="", default=None, metavar="M",
                    help="also the two-shot model M [default: the shipped one], on two-shot test sets (its figure too)")
    ap.add_argument("--two-shot-compare", nargs="+", default=[], metavar="M2",
                    help="other two-shot models (the run's int8 export, an earlier model) to compare on the same tiles")
    a = ap.parse_args()
    if a.guard_stats:
        print(json.dumps(guard_stats(RefocusModel.load(a.model or default_refocus_model_path()), a.guard_stats)))
        return
    models = {"int8": RefocusModel.load(a.model or default_refocus_model_path())}
    if a.high_only:
        print("\n".join(high_res(models["int8"])))
        return
    if a.figure_only:
        print("figure:", figure(models["int8"], DOCS / "refocus_figure.png"))
        return
    if a.float_model:
        models["float"] = RefocusModel.load(a.float_model)
    two_shot = None
    if a.two_shot is not None:
        two_shot = RefocusModel.load(a.two_shot or default_refocus_model_path(DEFAULT_TWO_SHOT_MODEL))
        for m in (two_shot, *(RefocusModel.load(c) for c in a.two_shot_compare)):
            name = f"tsva-{'int8' if m.quantized else 'float'}"
            models[name if name not in models else f"{name}-{m.path.stem}"] = m
    names = list(models)
    everything = {}
    for title, specimen, seed in (("held-out real H&E (corpus heldout)", "corpus:heldout", 5002),
                                  ("unseen procedural slides (seed 5001)", "procedural", 5001)):
        res = evaluate(models, specimen, seed, a.slides, a.fields, a.size, guard=not a.no_guard)
        everything[specimen] = res["rows"]
        print(f"\n### {title}, same and random labs, {a.size}x{a.size} frames\n")
        print("\n".join(table(res["rows"], names)))
        for n in names:
            print(f"{n}: " + json.dumps({k: round(v, 4) for k, v in bars(res["rows"], n).items()}))
    for n, m in models.items():
        print(f"{n}: " + json.dumps(frame_timing(m)))
    if not a.no_figure:
        print("figure:", figure(models["int8"], DOCS / "refocus_figure.png"))
        if two_shot is not None:
            print("figure:", figure(two_shot, DOCS / "two_shot_figure.png"))
    if a.json:
        Path(a.json).write_text(json.dumps(everything))


if __name__ == "__main__":  # pragma: no cover
    main()
