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
    document.getElementById("image-link").href = answer.image_url;
    const bars = document.getElementById("bars");
    bars.innerHTML = "";
    answer.probabilities.forEach((p, d) => {
      const row = document.createElement("div");
      row.className = "bar" + (d === answer.digit ? " top" : "");
      row.dataset.digit = d;
      row.innerHTML = `<span>${d}</span><span class="fill" style="width:${Math.round(p * 300)}px"></span>` +
        `<span class="p">${(p * 100).toFixed(1)}%</span>`;
      bars.appendChild(row);
    });
    document.getElementById("result").hidden = false;
  }

  async function send(body, headers) {
    document.getElementById("status").textContent = "classifying...";
    document.getElementById("error").textContent = "";
    try {
      const response = await fetch("api/predict", { method: "POST", body, headers });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
      show(answer);
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
    send(JSON.stringify({ image: pad.toDataURL("image/png") }), { "Content-Type": "application/json" });
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
    send(form, {});
  });
  clearPad();
})();
