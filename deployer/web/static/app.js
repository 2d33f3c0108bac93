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

  function show(answer) {
    document.getElementById("error").textContent = "";
    document.getElementById("digit").textContent = answer.digit;
    document.getElementById("model").textContent = answer.model;
    document.getElementById("latency").textContent = answer.latency_ms;
    const link = document.getElementById("image-link");
    link.href = answer.kept ? answer.image_url : "#";
    link.hidden = !answer.kept;
    const bars = document.getElementById("bars");
    bars.replaceChildren();
    answer.probabilities.forEach((p, d) => {
      const row = document.createElement("div");
      row.className = "bar" + (d === answer.digit ? " top" : "");
      row.dataset.digit = d;
      const label = document.createElement("span");
      label.textContent = d;
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${Math.round(p * 300)}px`;  // CSSOM, which the CSP allows; a style attribute it would not
      const percent = document.createElement("span");
      percent.className = "p";
      percent.textContent = `${(p * 100).toFixed(1)}%`;
      row.append(label, fill, percent);
      bars.appendChild(row);
    });
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
