// The viewer page: send a picture or a seed to POST v1/avatars, then show the views, the
// turntable and the mesh (in <model-viewer>). Files are fetched with the API key header and
// shown through blob URLs, since <img> and <model-viewer> cannot send headers themselves.
"use strict";

// the app may live under a route prefix (a Serve route_prefix), so every URL is relative to it
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const $ = (id) => document.getElementById(id);
const viewer = document.createElement("script");
viewer.type = "module";
viewer.src = base + "static/vendor/model-viewer.min.js";
document.head.appendChild(viewer);

$("key").value = localStorage.getItem("avatar-api-key") || "";
$("key").addEventListener("change", () => showModel());

function headers() {
  const key = $("key").value.trim();
  localStorage.setItem("avatar-api-key", key);
  return key ? { "X-API-Key": key } : {};
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path.startsWith("/") ? path : base + path, {
    ...options, headers: { ...headers(), ...(options.headers || {}) },
  });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw Object.assign(new Error(`${response.status}: ${message}`), { status: response.status });
  }
  return response;
}

async function blobUrl(path) {
  return URL.createObjectURL(await (await api(path)).blob());
}

// The model line says which model answers; asked again whenever the key changes and after
// each request, so that it never keeps a stale error (a 401 before the key was entered)
async function showModel() {
  try {
    const info = await (await api("v1/model")).json();
    const version = info.version ? ` v${info.version}` : "";
    const alias = info.alias ? ` @${info.alias}` : "";
    $("model").textContent = `model: ${info.name || info.uri}${version}${alias} · ` +
      `${info.resolution}px · ${info.image_conditioning ? "pictures and seeds" : "seeds only"} · ${info.device}`;
    $("model").className = "";
  } catch (err) {
    $("model").textContent = err.status === 401
      ? "model: this server needs an API key: enter it below"
      : `model: ${err.message}`;
    $("model").className = "error";
  }
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

async function request() {
  const options = { views: number("views"), resolution: number("resolution"),
                    mesh: true, mesh_resolution: number("mesh_resolution") };
  Object.keys(options).forEach((k) => options[k] === undefined && delete options[k]);
  const file = $("image").files[0];
  if (file) {
    const form = new FormData();
    form.append("image", file);
    const refine = number("refine");
    if (refine) options.refine = refine;  // pictures only: fit the avatar to the picture
    Object.entries(options).forEach(([k, v]) => form.append(k, String(v)));
    return api("v1/avatars", { method: "POST", body: form });
  }
  return api("v1/avatars", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ seeds: [number("seed") ?? 0], ...options }),
  });
}

async function render(result) {
  const results = $("results");
  results.replaceChildren();
  for (const avatar of result.avatars) {
    const card = document.createElement("section");
    card.className = "avatar";
    const mesh = document.createElement("model-viewer");
    mesh.setAttribute("camera-controls", "");
    mesh.setAttribute("auto-rotate", "");
    mesh.setAttribute("shadow-intensity", "0.6");
    mesh.setAttribute("alt", `3D mesh of avatar ${avatar.index}`);
    const right = document.createElement("div");
    const views = document.createElement("div");
    views.className = "views";
    const grid = document.createElement("img");
    grid.alt = `views of avatar ${avatar.index}`;
    grid.src = await blobUrl(avatar.views_grid);
    views.appendChild(grid);
    right.appendChild(views);
    if (avatar.turntable) {
      const turntable = document.createElement("img");
      turntable.className = "turntable";
      turntable.alt = `turntable of avatar ${avatar.index}`;
      turntable.src = await blobUrl(avatar.turntable);
      right.appendChild(turntable);
    }
    const links = document.createElement("p");
    links.className = "links";
    const label = avatar.seed !== null ? `seed ${avatar.seed}` : `sample ${avatar.sample}`;
    links.textContent = `${label} · ${avatar.mesh_faces ?? 0} faces · `;
    for (const [text, href] of [["views PNG", avatar.views_grid], ["mesh GLB", avatar.mesh]]) {
      if (!href) continue;
      const a = document.createElement("a");
      a.textContent = text;
      a.href = "#";
      a.onclick = async (e) => { e.preventDefault(); window.open(await blobUrl(href)); };
      links.appendChild(a);
    }
    right.appendChild(links);
    card.append(mesh, right);
    results.appendChild(card);
    if (avatar.mesh) mesh.src = await blobUrl(avatar.mesh);
  }
}

$("request").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("go").disabled = true;
  status("making the avatar…");
  const started = performance.now();
  try {
    const result = await (await request()).json();
    await render(result);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    status(`done in ${seconds} s · result ${result.id}`);
    showModel();
  } catch (err) {
    status(err.message, true);
  } finally {
    $("go").disabled = false;
  }
});

showModel();
