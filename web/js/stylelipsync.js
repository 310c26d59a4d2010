// StyleLipSync frontend extension.
//
// After a run, the "Predict lip motion" node (StyleLipSyncPredictMotion) shows the predicted
// mouth-opening curve over the audio's waveform envelope, and the style attention map (which
// reference frames each output frame attended to). The node sends, in its "ui" output:
//   stylelipsync_motion: [{fps, opening: [T], envelope: [T], attention: {rows, cols, values}}]
// Every field is optional; whatever is missing is simply not drawn.
// The "Model info" node (StyleLipSyncModelInfo) shows its report (ui.stylelipsync_text) as text.
//
// Widgets added here are display-only: they never serialize, so workflows stay unchanged.

import { app } from "../../../scripts/app.js";  // served at /extensions/<pack>/js/ (WEB_DIRECTORY is web/)

export const MOTION_NODE = "StyleLipSyncPredictMotion";
export const INFO_NODE = "StyleLipSyncModelInfo";
const MOTION_WIDGET = "stylelipsync_motion_view";
const INFO_WIDGET = "stylelipsync_info_view";
const COLORS = { bg: "#1b1b1f", grid: "#3a3a42", env: "#5b6b8a", curve: "#ffae3b", text: "#c8c8d0" };

/** Finite numbers of an array-like, or [] for anything else. */
export function numbers(value) {
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) return [];
  return Array.from(value, Number).filter(Number.isFinite);
}

/** Normalise a payload from the node into {fps, opening, envelope, attention|null}. */
export function normalizeMotion(payload) {
  const p = payload && typeof payload === "object" ? payload : {};
  const fps = Number.isFinite(Number(p.fps)) && Number(p.fps) > 0 ? Number(p.fps) : null;
  let attention = null;
  const a = p.attention;
  if (a && typeof a === "object") {
    const rows = Math.floor(Number(a.rows));
    const cols = Math.floor(Number(a.cols));
    const values = numbers(a.values);
    if (rows > 0 && cols > 0 && values.length === rows * cols) attention = { rows, cols, values };
  }
  return { fps, opening: numbers(p.opening), envelope: numbers(p.envelope), attention };
}

function range(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return hi > lo ? [lo, hi] : [lo - 1, lo + 1];
}

/** viridis-like colour ramp for 0..1. */
function ramp(t) {
  const stops = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
  ];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
}

function label(ctx, text, x, y) {
  const m = ctx.measureText(text);
  const size = parseInt(ctx.font, 10) || 12;
  ctx.fillStyle = "rgba(0,0,0,0.6)";
  ctx.fillRect(x - 3, y - size, m.width + 6, size + 5);
  ctx.fillStyle = COLORS.text;
  ctx.fillText(text, x, y);
}

/** Draw the curve panel (top) and the attention map (bottom) of a normalised payload into a canvas. */
export function drawMotion(canvas, motion) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.fillStyle = COLORS.bg;
  ctx.fillRect(0, 0, w, h);
  const pad = 6;
  const curveH = motion.attention ? Math.round(h * 0.5) : h - 2 * pad;
  const plotW = w - 2 * pad;
  const frames = Math.max(motion.opening.length, motion.envelope.length);
  ctx.font = `${Math.max(10, Math.round(h / 22))}px sans-serif`;

  // frame grid: a tick per second when fps is known
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(pad + 0.5, pad + 0.5, plotW - 1, curveH - 1);
  if (motion.fps && frames > 1) {
    const seconds = frames / motion.fps;
    const step = seconds > 20 ? 5 : 1;
    for (let s = step; s < seconds; s += step) {
      const x = pad + (s * motion.fps * plotW) / (frames - 1);
      ctx.beginPath();
      ctx.moveTo(x, pad);
      ctx.lineTo(x, pad + curveH);
      ctx.stroke();
    }
  }
  const xOf = (i, n) => pad + (n > 1 ? (i * plotW) / (n - 1) : plotW / 2);
  const mid = pad + curveH / 2;

  // waveform envelope, mirrored around the middle line
  if (motion.envelope.length) {
    const [, hi] = range(motion.envelope.map(Math.abs));
    const scale = hi > 0 ? (curveH / 2 - 2) / hi : 0;
    const n = motion.envelope.length;
    ctx.fillStyle = COLORS.env;
    ctx.beginPath();
    ctx.moveTo(xOf(0, n), mid);
    motion.envelope.forEach((v, i) => ctx.lineTo(xOf(i, n), mid - Math.abs(v) * scale));
    for (let i = n - 1; i >= 0; i--) ctx.lineTo(xOf(i, n), mid + Math.abs(motion.envelope[i]) * scale);
    ctx.closePath();
    ctx.fill();
  }

  // mouth opening, scaled to its own range
  if (motion.opening.length) {
    const [lo, hi] = range(motion.opening);
    const n = motion.opening.length;
    const yOf = (v) => pad + curveH - 2 - ((v - lo) / (hi - lo)) * (curveH - 4);
    ctx.strokeStyle = COLORS.curve;
    ctx.lineWidth = 2;
    ctx.beginPath();
    motion.opening.forEach((v, i) => (i ? ctx.lineTo(xOf(i, n), yOf(v)) : ctx.moveTo(xOf(i, n), yOf(v))));
    ctx.stroke();
  }
  const title = frames
    ? `${frames} frames${motion.fps ? ` · ${(frames / motion.fps).toFixed(2)} s @ ${motion.fps} fps` : ""}`
    : "no motion data";
  label(ctx, title, pad + 6, pad + 16);

  // attention map: rows = output frames (down), cols = reference frames (across)
  if (motion.attention) {
    const { rows, cols, values } = motion.attention;
    const top = pad + curveH + pad;
    const mapH = h - top - pad;
    const [lo, hi] = range(values);
    const img = new ImageData(cols, rows);
    values.forEach((v, i) => {
      const [r, g, b] = ramp((v - lo) / (hi - lo));
      img.data.set([r, g, b, 255], i * 4);
    });
    const off = document.createElement("canvas");
    off.width = cols;
    off.height = rows;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, pad, top, plotW, mapH);
    label(ctx, `style attention: ${rows} frames × ${cols} reference frames`, pad + 6, top + 16);
  }
  return { frames, attention: Boolean(motion.attention) };
}

function displayWidget(node, name, element, height) {
  let widget = node.widgets?.find((w) => w.name === name);
  if (widget) return widget;
  widget = node.addDOMWidget(name, "stylelipsync_view", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => height,
    getHeight: () => height,
  });
  widget.serialize = false; // never part of widgets_values
  return widget;
}

function showMotion(node, payload) {
  let view = node.__stylelipsyncMotion;
  if (!view) {
    const box = document.createElement("div");
    box.style.cssText = "width:100%;height:100%;min-height:200px;";
    const canvas = document.createElement("canvas");
    canvas.className = "stylelipsync-motion";
    canvas.style.cssText = "width:100%;height:100%;display:block;border-radius:4px;";
    box.appendChild(canvas);
    view = { box, canvas, motion: null };
    node.__stylelipsyncMotion = view;
    displayWidget(node, MOTION_WIDGET, box, 220);
    const redraw = () => {
      if (!view.motion) return;
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.max(64, Math.round((canvas.clientWidth || 320) * ratio));
      canvas.height = Math.max(64, Math.round((canvas.clientHeight || 200) * ratio));
      drawMotion(canvas, view.motion);
    };
    view.redraw = redraw;
    if (typeof ResizeObserver !== "undefined") new ResizeObserver(redraw).observe(canvas);
    const size = node.computeSize?.();
    if (size) node.setSize?.([Math.max(node.size[0], 360), Math.max(node.size[1], size[1])]);
  }
  view.motion = normalizeMotion(payload);
  view.redraw();
  node.setDirtyCanvas?.(true, true);
}

function showInfo(node, text) {
  let area = node.__stylelipsyncInfo;
  if (!area) {
    area = document.createElement("textarea");
    area.className = "stylelipsync-info";
    area.readOnly = true;
    area.style.cssText = "width:100%;height:100%;font:11px monospace;resize:none;";
    node.__stylelipsyncInfo = area;
    displayWidget(node, INFO_WIDGET, area, 140);
    node.setSize?.([Math.max(node.size[0], 420), Math.max(node.size[1], 220)]);
  }
  area.value = text;
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "StyleLipSync.Views",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== MOTION_NODE && nodeData?.name !== INFO_NODE) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      try {
        if (nodeData.name === MOTION_NODE && message?.stylelipsync_motion?.length) {
          showMotion(this, message.stylelipsync_motion[0]);
        }
        if (nodeData.name === INFO_NODE && message?.stylelipsync_text?.length) {
          showInfo(this, message.stylelipsync_text.map(String).join("\n\n"));
        }
      } catch (error) {
        console.warn("StyleLipSync: could not draw the node's view", error);
      }
      return result;
    };
  },
});
