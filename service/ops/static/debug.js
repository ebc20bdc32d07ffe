"use strict";

// Redraws every REFRESH_MS from the JSON and text views beside this page (relative URLs, so
// the page also works behind a proxy that moves it). Everything shown goes in as text, never
// as markup: task and worker names are the service's data, not the page's.
const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";

const byId = (id) => document.getElementById(id);

async function get(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok && response.status !== 503) {
    throw new Error(`${path}: HTTP ${response.status}`);
  }
  return response;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
}

function lastExit(exit) {
  if (!exit) return "–";
  const why = exit.error || exit.cancel_reason;
  return `${exit.outcome} after ${duration(exit.uptime_s)}${why ? `: ${why}` : ""}`;
}

function showStatus(response, text) {
  const status = byId("status");
  const ready = response.status === 200;
  status.textContent = ready ? "ready" : `not ready: ${text.trim().split("\n").join("; ")}`;
  status.className = `pill ${ready ? "ready" : "not-ready"}`;
}

function showWorkers(workers) {
  const body = byId("workers").tBodies[0];
  body.replaceChildren();
  for (const worker of workers) {
    const row = body.insertRow();
    row.dataset.worker = worker.worker;
    cell(row, worker.worker);
    cell(row, worker.state, `state-${worker.state}`);
    cell(row, duration(worker.uptime_s), "number");
    cell(row, String(worker.restarts), "number");
    cell(row, lastExit(worker.last_exit), worker.last_exit?.outcome === "crashed" ? "crashed" : "");
  }
  if (workers.length === 0) {
    cell(body.insertRow(), "no workers selected (SERVICE_WORKERS)");
  }
}

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function showChart(data) {
  const chart = byId("chart");
  const [width, height, left, top, bottom] = [640, 140, 48, 8, 20];
  const samples = data.samples;
  chart.replaceChildren();
  chart.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }));
  if (samples.length === 0) return;
  const span = Math.max(samples[0].ago_s, data.interval_s);
  const counts = samples.map((sample) => sample.live);
  const high = Math.max(...counts);
  const low = Math.min(...counts);
  const range = Math.max(high - low, 1);
  const x = (ago) => left + (width - left) * (1 - ago / span);
  const y = (live) => top + (height - top - bottom) * (1 - (live - low) / range);
  const points = samples.map((sample) => `${x(sample.ago_s).toFixed(1)},${y(sample.live).toFixed(1)}`);
  chart.append(svg("polyline", { class: "series", points: points.join(" ") }));
  chart.append(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, high.toLocaleString()));
  chart.append(svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, low.toLocaleString()));
  chart.append(svg("text", { x: left, y: height - 4 }, `${duration(span)} ago`));
  chart.append(svg("text", { x: width, y: height - 4, "text-anchor": "end" }, "now"));
  byId("live").textContent = `${counts[counts.length - 1].toLocaleString()} now`;
}

async function refresh() {
  try {
    const [ready, workers, samples, tree] = await Promise.all([
      get("../readyz"), get("workers"), get("samples"), get("tasks"),
    ]);
    showStatus(ready, await ready.text());
    showWorkers(await workers.json());
    showChart(await samples.json());
    byId("tree").textContent = await tree.text();
    byId("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    byId("problem").hidden = true;
    document.body.dataset.loaded = "true";
  } catch (error) {
    byId("problem").textContent = `cannot reach the service: ${error.message}`;
    byId("problem").hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
