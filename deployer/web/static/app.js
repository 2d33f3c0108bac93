// Drawing pad and upload form; both post to /api/predict and render the answer.
(function () {
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  let drawing = false;
  let inked = false;

  function clearPad() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    inked = false;
  }

  function point(event) {
    const box = pad.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    pad.setPointerCapture(event.pointerId);
    const [x, y] = point(event);
    ctx.beginPath();
    ctx.moveTo(x, y);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    ctx.lineWidth = 20;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#000";
    ctx.lineTo(x, y);
    ctx.stroke();
    inked = true;
  });
  ["pointerup", "pointercancel", "pointerleave"].forEach((name) =>
    pad.addEventListener(name, () => { drawing = false; }));

  // The ten class probabilities as an inline SVG bar chart. Geometry goes in SVG attributes and
  // colours in style.css: the CSP allows neither inline scripts nor style attributes.
  const SVG = "http://www.w3.org/2000/svg";
  const CHART = { width: 320, height: 170, top: 18, plot: 120, slot: 32, bar: 22 };

  function svg(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([key, value]) => node.setAttribute(key, value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawChart(container, probabilities, digit) {
    const chart = svg("svg", {
      viewBox: `0 0 ${CHART.width} ${CHART.height}`, width: CHART.width, height: CHART.height, role: "img",
      "aria-label": "probability of each digit: " +
        probabilities.map((p, d) => `${d} ${(p * 100).toFixed(1)}%`).join(", "),
    });
    const base = CHART.top + CHART.plot;
    probabilities.forEach((p, d) => {
      const x = d * CHART.slot + (CHART.slot - CHART.bar) / 2;
      const h = Math.max(0, Math.min(1, p)) * CHART.plot;
      const percent = `${(p * 100).toFixed(p >= 0.995 || p < 0.0005 ? 0 : 1)}%`;
      const bar = svg("g", { class: "bar" + (d === digit ? " top" : ""), "data-digit": d, "data-probability": p });
      bar.append(
        svg("title", {}, `${d}: ${(p * 100).toFixed(2)}%`),
        svg("rect", { class: "track", x, y: CHART.top, width: CHART.bar, height: CHART.plot }),
        svg("rect", { class: "fill", x, y: (base - h).toFixed(2), width: CHART.bar, height: h.toFixed(2) }),
        svg("text", { class: "p", x: x + CHART.bar / 2, y: (base - h - 4).toFixed(2) }, percent),
        svg("text", { class: "label", x: x + CHART.bar / 2, y: base + 18 }, String(d)),
      );
      chart.appendChild(bar);
    });
    container.replaceChildren(chart);
  }

  function show(answer) {
    document.getElementById("error").textContent = "";
    document.getElementById("digit").textContent = answer.digit;
    document.getElementById("model").textContent = answer.model;
    document.getElementById("latency").textContent = answer.latency_ms;
    const link = document.getElementById("image-link");
    link.href = answer.kept ? answer.image_url : "#";
    link.hidden = !answer.kept;
    drawChart(document.getElementById("bars"), answer.probabilities, answer.digit);
    document.getElementById("result").hidden = false;
  }

  // The answer's words, whatever came back: JSON from this server, or an HTML error page from
  // something in between, or nothing at all.
  async function post(body, headers) {
    let response;
    try {
      response = await fetch("api/predict", { method: "POST", body, headers });
    } catch (err) {
      throw new Error("cannot reach this page's server; check that `deployer serve` is still running");
    }
    const type = response.headers.get("Content-Type") || "";
    let answer = null;
    if (type.includes("application/json")) {
      try { answer = await response.json(); } catch (err) { answer = null; }
    }
    if (!answer) {
      throw new Error(`the server answered HTTP ${response.status} without an explanation; ` +
        "check that `deployer serve` and the platform (`deployer status`) are running");
    }
    if (!response.ok) throw new Error(answer.error || `the server answered HTTP ${response.status}`);
    return answer;
  }

  async function send(body, headers) {
    document.getElementById("status").textContent = "classifying...";
    document.getElementById("error").textContent = "";
    try {
      show(await post(body, headers));
      document.getElementById("status").textContent = "done";
    } catch (err) {
      document.getElementById("status").textContent = "";
      document.getElementById("error").textContent = err.message;
    }
  }

  document.getElementById("classify").addEventListener("click", () => {
    if (!inked) {
      document.getElementById("error").textContent = "draw a digit first";
      return;
    }
    const keep = document.getElementById("keep").checked;
    send(JSON.stringify({ image: pad.toDataURL("image/png"), keep }), { "Content-Type": "application/json" });
  });
  document.getElementById("clear").addEventListener("click", clearPad);
  document.getElementById("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = document.getElementById("file").files[0];
    if (!file) {
      document.getElementById("error").textContent = "choose a picture first";
      return;
    }
    const form = new FormData();
    form.append("image", file);
    if (document.getElementById("keep").checked) form.append("keep", "1");
    send(form, {});
  });
  clearPad();
})();
