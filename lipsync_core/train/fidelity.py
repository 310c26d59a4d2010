"""Picture fidelity of the whole job at frame level: self-reenactment on held-out puppet speakers.

Each clip is lip-synced to its *own* audio, so the input frames are the truth. Every figure is taken on
the frames as a user sees them (after paste-back), with boxes placed from the puppet's exact landmarks:

- the mouth box is centred on the mean of the outer-lip points, 1.2 x 0.96 inter-ocular distances (IOD);
  the nose box on the mean of points 1, 2, 98 and 327, 0.7 x 0.4 IOD;
- PSNR in the mouth box and in the repainted region (mask > 0);
- sharpness: mean squared Laplacian of the grey image in a box, output over truth (nose: should be 1);
- repainted area: the paste mask's area in IOD^2;
- re-tracked lip LMD: the output re-tracked by the face tracker, aligned, lip points against the truth's,
  next to the same for the input re-tracked (the tracker's floor);
- mouth opening (inner-lip gap) of the re-tracked output against the truth: correlation and range ratio
  (5-95% spread, output / truth); the same for stage 1's own prediction in the whole-job row;
- in the two rows a motion drives (renderer, whole job): the re-tracked opening against the opening of the
  *driving* params (``drive_``: how well stage 2 follows what it is given, apart from stage 1's errors).

Rows, each with the same crop and paste-back as a real run, so each isolates one part:
``resample`` (the crop itself pasted back), ``vae`` (crop -> VAE -> paste: the ceiling of the model rows,
which decode the clean upper latent beside the generated lower one), ``seam`` (the first way of decoding:
the masked crop's upper latent beside the true lower latent), ``renderer`` (the renderer driven by the true
mouth params), ``whole job`` (stage 1's prediction -> renderer: what a user gets).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..audio import TARGET_RATE, load_audio_file
from ..face import topology, track_faces, warp_to_crops
from ..face.template import eye_centres
from ..media import read_video
from ..motion import lip_lmd, mouth_opening
from ..render.settings import RenderSettings
from ..style import closed_mouth_params
from ..types import FaceAnalysis, FaceTrack, LipMotion

ROWS = ("resample", "vae", "seam", "renderer", "whole job")
ROW_TITLES = {
    "resample": "resample only (crop -> paste)",
    "vae": "VAE only",
    "seam": "masked-upper decode (the first way: masked upper + true lower latent)",
    "renderer": "renderer, true motion",
    "whole job": "whole job (predicted motion)",
}
MOUTH_BOX = (1.2, 0.96)  # IOD, width x height
NOSE_BOX = (0.7, 0.4)
NOSE_POINTS = (1, 2, 98, 327)
_OUTER_LIPS = topology.as_array(topology.LIPS_OUTER)


@dataclass
class FidelityOptions:
    clips_per_speaker: int = 1
    max_frames: int = 0  # per clip; 0: all
    steps: int = RenderSettings.steps
    sampler: str = RenderSettings.sampler
    seed: int = 0
    guidance: float = RenderSettings.guidance
    guided_steps: float = RenderSettings.guided_steps
    rows: tuple[str, ...] = ROWS


# ----------------------------------------------------------------------------- measures


def _box(center: np.ndarray, iod: float, size: tuple[float, float], hw: tuple[int, int]) -> tuple[slice, slice]:
    w, h = size[0] * iod, size[1] * iod
    x0, x1 = int(round(center[0] - w / 2)), int(round(center[0] + w / 2))
    y0, y1 = int(round(center[1] - h / 2)), int(round(center[1] + h / 2))
    return slice(max(y0, 0), min(y1, hw[0])), slice(max(x0, 0), min(x1, hw[1]))


def _grey(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    return x @ np.array([0.299, 0.587, 0.114], np.float32)


def laplacian_energy(img: np.ndarray) -> float:
    """Mean squared Laplacian of the grey image: high-frequency detail (sharpness)."""
    return float(np.mean(cv2.Laplacian(_grey(img), cv2.CV_32F, ksize=1) ** 2))


def face_boxes(landmarks: np.ndarray, hw: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice], float]:
    """(mouth box, nose box, IOD in pixels) of one frame's (478, 2+) truth landmarks."""
    left, right = eye_centres(landmarks[None, :, :2])
    iod = float(np.linalg.norm(left[0] - right[0]))
    mouth = _box(landmarks[_OUTER_LIPS, :2].mean(axis=0), iod, MOUTH_BOX, hw)
    nose = _box(landmarks[list(NOSE_POINTS), :2].mean(axis=0), iod, NOSE_BOX, hw)
    return mouth, nose, iod


def _psnr(se: float, n: int) -> float:
    return float(10 * np.log10(1.0 / max(se / max(n, 1), 1e-10)))


def frame_figures(out: np.ndarray, truth: np.ndarray, masks: np.ndarray, landmarks: np.ndarray) -> dict:
    """Box PSNR, sharpness and repainted area over frames (uint8 or float frames, same shapes)."""
    hw = truth.shape[1:3]
    se_mouth = se_mask = n_mouth = n_mask = 0.0
    sharp = {"mouth": [0.0, 0.0], "nose": [0.0, 0.0]}
    area = []
    for o, t, m, lm in zip(out, truth, masks, landmarks, strict=True):
        mouth, nose, iod = face_boxes(lm, hw)
        of = o.astype(np.float32) / (255.0 if o.dtype == np.uint8 else 1.0)
        tf = t.astype(np.float32) / (255.0 if t.dtype == np.uint8 else 1.0)
        d2 = ((of - tf) ** 2).sum(axis=-1)
        se_mouth += float(d2[mouth].sum())
        n_mouth += d2[mouth].size * 3
        region = m > 1e-3
        se_mask += float(d2[region].sum())
        n_mask += int(region.sum()) * 3
        area.append(float(m.sum()) / iod**2)
        for name, box in (("mouth", mouth), ("nose", nose)):
            sharp[name][0] += laplacian_energy(o[box])
            sharp[name][1] += laplacian_energy(t[box])
    return {
        "psnr_mouth": _psnr(se_mouth, n_mouth),
        "psnr_repainted": _psnr(se_mask, n_mask) if n_mask else None,
        "sharpness_mouth": sharp["mouth"][0] / max(sharp["mouth"][1], 1e-12),
        "sharpness_nose": sharp["nose"][0] / max(sharp["nose"][1], 1e-12),
        "repainted_area_iod2": float(np.mean(area)),
    }


def opening_figures(opening: np.ndarray, truth: np.ndarray) -> dict:
    """Correlation and 5-95% range ratio of a mouth-opening curve against the truth's."""
    ok = np.isfinite(opening) & np.isfinite(truth)
    o, t = opening[ok], truth[ok]
    spread = float(np.subtract(*np.quantile(t, [0.95, 0.05])))
    return {
        "opening_corr": float(np.corrcoef(o, t)[0, 1]) if len(o) > 2 and o.std() > 0 and t.std() > 0 else 0.0,
        "opening_range": float(np.subtract(*np.quantile(o, [0.95, 0.05]))) / max(spread, 1e-9),
    }


# ----------------------------------------------------------------------------- one clip


def _clip_rows(models, codec, video_path: Path, options: FidelityOptions) -> dict:
    """Frames out of every row for one clip, plus what is needed to score them."""
    from .. import stages
    from ..media import ArrayFrames
    from ..pipeline import JobOptions, lipsync
    from ..render.conditioning import mask_lower_half
    from ..types import FaceAnalysis

    frames, fps = read_video(video_path)
    truth = np.load(video_path.with_name(video_path.stem + ".truth.npz"))["landmarks"]
    if options.max_frames:
        frames, truth = frames[: options.max_frames], truth[: options.max_frames]
    wave = load_audio_file(video_path.with_suffix(".wav"))
    wave = wave[: int(round(len(frames) / fps * TARGET_RATE))]
    settings = RenderSettings(sampler=options.sampler, steps=options.steps, seed=options.seed,
                              guidance=options.guidance, guided_steps=options.guided_steps)
    crop_size = models.renderer.config.crop_size
    source = ArrayFrames(frames, fps)
    track = stages.track(source, crop_size)
    analysis = FaceAnalysis.of(track, models.mouth)
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def run(generate=None) -> tuple[np.ndarray, np.ndarray]:
        motion = LipMotion(analysis.params, fps)  # the true motion: these rows isolate stage 2's parts
        return stages.concat(stages.render(models, analysis, motion, source, settings=settings, codec=codec,
                                           generate=generate))

    half = models.renderer.config.latent_size // 2

    def resample(crops, _idx):
        return crops.numpy()

    def vae(crops, _idx):
        return codec.decode(codec.encode(crops)).float().cpu().numpy()

    def seam(crops, _idx):
        upper = codec.encode(mask_lower_half(crops))
        lower = codec.encode(crops)
        return codec.decode(torch.cat([upper[..., :half, :], lower[..., half:, :]], dim=-2)).float().cpu().numpy()

    with torch.inference_mode():
        for row, fn in (("resample", resample), ("vae", vae), ("seam", seam)):
            if row in options.rows:
                outputs[row] = run(fn)
        if "renderer" in options.rows:
            outputs["renderer"] = run()
    predicted = None
    if "whole job" in options.rows:
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        result = lipsync(source, wave, models, lambda f, m: chunks.append((f, m)), style_wave=wave,
                         options=JobOptions(settings=settings), codec=codec, track=track)
        outputs["whole job"] = (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]))
        predicted = result.motion.params
    else:
        feats = stages.audio_features(wave, fps, len(frames), models.feature_spec)
        predicted = stages.predict_motion(models, feats, None).params
    return {"frames": frames, "truth": truth, "track": track, "analysis": analysis, "outputs": outputs,
            "predicted": predicted, "fps": fps}


def _score_clip(models, clip: dict, crop_size: int) -> dict:
    from .. import stages
    from ..media import ArrayFrames

    mouth = models.mouth
    frames, truth, track = clip["frames"], clip["truth"], clip["track"]
    truth_aligned = mouth.align(truth)
    truth_open = mouth_opening(truth_aligned)
    ok = track.detected

    def retracked(images: np.ndarray) -> tuple[float, np.ndarray]:
        t = stages.track(ArrayFrames(images, clip["fps"]), crop_size)
        good = t.detected & ok
        aligned = mouth.align(t.landmarks)
        lmd = lip_lmd(aligned[good], truth_aligned[good]) if good.any() else float("nan")
        opening = mouth_opening(aligned)
        opening[~t.detected] = np.nan
        return lmd, opening

    floor, _ = retracked(frames)
    rows = {}
    for row, (out, masks) in clip["outputs"].items():
        figures = frame_figures(out, frames, masks, truth)
        lmd, opening = retracked(out)
        figures.update({"lip_lmd_retracked": lmd, "lip_lmd_floor": floor, **opening_figures(opening, truth_open)})
        drive = {"renderer": clip["analysis"].params, "whole job": clip["predicted"]}.get(row)
        if drive is not None:
            drive_open = mouth.opening(drive, clip["analysis"].neutral)
            figures.update({f"drive_{k}": v for k, v in opening_figures(opening, drive_open).items()})
        if row == "whole job":
            figures.update({f"stage1_{k}": v for k, v in opening_figures(drive_open, truth_open).items()})
        rows[row] = figures
    return rows


# ----------------------------------------------------------------------------- all clips


def held_out_clips(videos: str | os.PathLike, clips_per_speaker: int) -> list[Path]:
    """The first ``clips_per_speaker`` clips of every speaker folder of a puppet-world set."""
    out = []
    for speaker in sorted(p for p in Path(videos).iterdir() if p.is_dir()):
        out += sorted(speaker.glob("*.mp4"))[:clips_per_speaker]
    return out


def fidelity(models, videos: str | os.PathLike, options: FidelityOptions | None = None, codec=None,
             progress: bool = False) -> dict:
    """Figures per row, pooled over clips (frame-weighted means) and per speaker."""
    options = options or FidelityOptions()
    codec = models.codec(codec)
    clips = held_out_clips(videos, options.clips_per_speaker)
    per_clip, weights = [], []
    for path in clips:
        clip = _clip_rows(models, codec, path, options)
        scored = _score_clip(models, clip, models.renderer.config.crop_size)
        per_clip.append({"clip": f"{path.parent.name}/{path.stem}", "frames": len(clip["frames"]), "rows": scored})
        weights.append(len(clip["frames"]))
        if progress:
            print(f"{path.parent.name}/{path.stem}: " + json.dumps({r: round(v["psnr_mouth"], 2)
                                                                     for r, v in scored.items()}), flush=True)
    w = np.asarray(weights, np.float64)
    pooled = {}
    for row in options.rows:
        keys = per_clip[0]["rows"][row].keys()
        pooled[row] = {k: _weighted([c["rows"][row][k] for c in per_clip], w) for k in keys}
        pooled[row]["opening_corr_min"] = float(min(c["rows"][row]["opening_corr"] for c in per_clip))
    return {"videos": str(videos), "clips": len(clips), "frames": int(w.sum()), "options": options.__dict__ | {
        "rows": list(options.rows)}, "rows": pooled, "per_clip": per_clip}


def _weighted(values: list, w: np.ndarray) -> float | None:
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    ok = np.isfinite(v)
    return float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() else None


def markdown(report: dict) -> str:
    """The figures as a Markdown table, one row per row of the benchmark."""
    cols = [("psnr_mouth", "mouth PSNR", 2), ("psnr_repainted", "repainted PSNR", 2),
            ("sharpness_mouth", "mouth sharp.", 2), ("sharpness_nose", "nose sharp.", 2),
            ("repainted_area_iod2", "area IOD²", 2), ("lip_lmd_retracked", "re-tracked LMD", 4),
            ("opening_corr", "open. corr (min)", 2), ("opening_range", "open. range", 2)]
    lines = [f"Self-reenactment, {report['clips']} held-out clips, {report['frames']} frames "
             f"({report['videos']}); re-tracked-truth LMD floor "
             f"{next(iter(report['rows'].values()))['lip_lmd_floor']:.4f}.", "",
             "| row | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row, f in report["rows"].items():
        cells = []
        for key, _title, digits in cols:
            v = f.get(key)
            cell = "n/a" if v is None else f"{v:.{digits}f}"
            if key == "opening_corr":
                cell += f" ({f['opening_corr_min']:.2f})"
            cells.append(cell)
        lines.append(f"| {ROW_TITLES[row]} | " + " | ".join(cells) + " |")
    whole = report["rows"].get("whole job")
    if whole and "stage1_opening_corr" in whole:
        lines.append("")
        lines.append(f"Stage 1's own prediction: opening correlation {whole['stage1_opening_corr']:.4f}, "
                     f"range ratio {whole['stage1_opening_range']:.2f}.")
    follow = [f"{ROW_TITLES[row]}: {f['drive_opening_corr']:.2f} / {f['drive_opening_range']:.2f}"
              for row, f in report["rows"].items() if f.get("drive_opening_corr") is not None]
    if follow:
        lines.append("")
        lines.append("Output opening against the driving params' opening (corr / range): " + "; ".join(follow) + ".")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the closed-mouth shortcut check

SHORTCUT_TARGETS = 12  # rendered: the clip's widest-open frames
SHORTCUT_REFERENCES = 3


@dataclass
class ClosedMouthScene:
    """The setting of the closed-mouth shortcut check (issue 15): a closed-mouth motion drives a clip's widest-open
    frames, so an output whose mouth stays open copied it from the context or the references, not the motion.
    Shared by ``tests/test_render_fidelity.py`` (the pass mark) and ``benchmarks/bench_shortcut.py`` (the cases)."""

    frames: np.ndarray
    fps: float
    crop_size: int
    track: FaceTrack  # of the input clip
    analysis: FaceAnalysis
    order: np.ndarray  # frames by mouth opening, most closed first
    targets: np.ndarray  # the widest-open frames, in time order
    motion: LipMotion  # the person's closed mouth on every frame
    closed_level: float  # the clip's 5% opening quantile
    open_level: float  # the targets' mean opening

    def reference_frames(self, open_mouth: bool = True, count: int = SHORTCUT_REFERENCES) -> np.ndarray:
        """The widest-open (``open_mouth``) or the most closed ``count`` frames of the clip."""
        return self.order[-count:] if open_mouth else self.order[:count]

    def crops(self, indices: np.ndarray) -> np.ndarray:
        return warp_to_crops(self.frames[indices], self.track.crop_transforms[indices], self.crop_size)

    def share_closed(self, models, out: np.ndarray) -> tuple[float, np.ndarray]:
        """(share of the way from the targets' opening to the closed level that the re-tracked output mouth
        closed, per-frame detection flags of the re-tracking); 1 = fully closed, 0 = as open as the input."""
        again = track_faces(out, self.fps, crop_size=self.crop_size)
        opening = float(mouth_opening(models.mouth.align(again.landmarks)).mean())
        return 1 - (opening - self.closed_level) / (self.open_level - self.closed_level), again.detected


def closed_mouth_scene(models, frames: np.ndarray, fps: float, targets: int = SHORTCUT_TARGETS) -> ClosedMouthScene:
    """Track ``frames`` at the renderer's crop size and set up the closed-mouth shortcut check on them."""
    size = int(models.renderer.config.crop_size)
    track = track_faces(frames, fps, crop_size=size)
    analysis = FaceAnalysis.of(track, models.mouth)
    order = np.argsort(analysis.openness)
    chosen = np.sort(order[-targets:])
    closed = np.repeat(closed_mouth_params(models.mouth)[None], len(frames), axis=0)
    return ClosedMouthScene(frames, fps, size, track, analysis, order, chosen, LipMotion(closed, fps),
                            float(np.quantile(analysis.openness, 0.05)), float(analysis.openness[chosen].mean()))
