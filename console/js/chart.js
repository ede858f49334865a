// A small live chart of an app's records per second and lag over the last minutes (SVG,
// each series scaled to its own peak), with a text alternative for screen readers.
import { h, svg, replace } from "./ui.js";
import { count, number } from "./format.js";

const WIDTH = 210;
const HEIGHT = 48;
const MAX_SPAN = 5 * 60; // seconds shown at most
const MIN_SPAN = 60; // until there are more, the first minute fills the width

export function chart(name) {
  const graphic = svg("svg", { class: "chart", width: WIDTH, height: HEIGHT, viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${name}: no samples yet` });
  const caption = h("figcaption", {});
  const figure = h("figure", { class: "chart-figure" }, graphic, caption);
  figure.update = (history) => draw(graphic, caption, name, history || []);
  figure.update([]);
  return figure;
}

function draw(graphic, caption, name, history) {
  const now = history.length ? history[history.length - 1].t : 0;
  const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, history.length ? now - history[0].t : 0));
  const points = history.filter((s) => s.rate !== null);
  const peakRate = Math.max(1, ...points.map((s) => s.rate));
  const peakLag = Math.max(1, ...history.map((s) => s.lag || 0));
  const x = (t) => WIDTH - 2 - ((now - t) / span) * (WIDTH - 4);
  const y = (value, peak) => HEIGHT - 3 - (value / peak) * (HEIGHT - 8);
  const children = [svg("rect", { class: "frame", x: 0.5, y: 0.5, width: WIDTH - 1, height: HEIGHT - 1, rx: 3 }),
    svg("line", { class: "baseline", x1: 2, x2: WIDTH - 2, y1: HEIGHT - 3, y2: HEIGHT - 3 })];
  if (points.length > 1) {
    const line = points.map((s) => `${x(s.t).toFixed(1)},${y(s.rate, peakRate).toFixed(1)}`).join(" ");
    const first = x(points[0].t).toFixed(1);
    const last = x(points[points.length - 1].t).toFixed(1);
    children.push(svg("polygon", { class: "area-records", points: `${first},${HEIGHT - 3} ${line} ${last},${HEIGHT - 3}` }));
    children.push(svg("polyline", { class: "series-records", points: line }));
  }
  const lagPoints = history.filter((s) => s.lag !== null && s.lag !== undefined);
  if (lagPoints.length > 1) {
    children.push(svg("polyline", { class: "series-lag", points: lagPoints.map((s) => `${x(s.t).toFixed(1)},${y(s.lag, peakLag).toFixed(1)}`).join(" ") }));
  }
  replace(graphic, children);
  const latest = history[history.length - 1];
  const rate = latest && latest.rate !== null ? latest.rate : null;
  const lag = latest ? latest.lag : null;
  replace(caption,
    h("span", { class: "key-records" }, rate === null ? "— records/s" : `${number(rate, rate < 10 ? 1 : 0)} records/s`),
    h("span", { class: "key-lag" }, lag === null || lag === undefined ? "lag —" : `lag ${count(lag)}`));
  graphic.setAttribute("aria-label", history.length < 2
    ? `${name}: the chart fills in as samples arrive`
    : `${name}, last ${Math.round((now - history[0].t) / 60) || 1} minutes: ${rate === null ? "no rate yet" : number(rate, 1) + " records per second now"}, peak ${number(peakRate, 0)}; lag ${lag === null || lag === undefined ? "unknown" : count(lag)} records, peak ${count(peakLag)}`);
}
