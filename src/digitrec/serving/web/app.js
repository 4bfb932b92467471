// digitrec's page: draw a digit (pointer events: mouse, touch, pen) or give a picture, and
// show what POST /api/predict answers. No library, nothing fetched from elsewhere.
"use strict";

const MAX_BYTES = 10 * 1024 * 1024;   // the server's body limit
const WHILE_DRAWING_MS = 350;         // at most one reading this often while a stroke goes on

const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const seen = document.getElementById("seen");
const bars = document.getElementById("bars");
const prediction = document.getElementById("prediction");
const confidence = document.getElementById("confidence");
const statusLine = document.getElementById("status");
const dropzone = document.getElementById("dropzone");
const readingPanel = document.getElementById("reading");
const boxes = document.getElementById("boxes");
const characters = document.getElementById("characters");

let drawing = null;      // the pointer that is drawing, and its last point
let inFlight = false;    // a request is on its way
let queued = null;       // the newest picture waiting for that request to finish
let lastSent = 0;
let generation = 0;      // bumped by Clear: answers to older pictures are not shown
let waiting = 0;         // pictures taken and not yet answered (aria-busy while any)
let placement = null;    // where an uploaded picture sits on the pad: {scale, x, y}

function busy(change) {
  waiting += change;
  readingPanel.setAttribute("aria-busy", waiting > 0 ? "true" : "false");
}

function blankPad() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, pad.width, pad.height);
}

function buildBars() {
  for (let digit = 0; digit < 10; digit++) {
    const row = document.createElement("li");
    row.innerHTML = `<span>${digit}</span><span class="track" aria-hidden="true">` +
      `<span class="fill"></span></span><span class="pct">&ndash;</span>`;
    bars.appendChild(row);
  }
}

function showStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function resetReading(text) {
  prediction.textContent = "";
  confidence.textContent = "";
  for (const row of bars.children) {
    row.classList.remove("top");
    row.querySelector(".fill").style.width = "0";
    row.querySelector(".pct").textContent = "\u2013";
  }
  seen.getContext("2d").clearRect(0, 0, 28, 28);
  boxes.getContext("2d").clearRect(0, 0, boxes.width, boxes.height);
  characters.textContent = "";
  showStatus(text);
}

// A box round each character found: green a digit (with the digit read), red not a digit.
function drawBoxes(result) {
  const draw = boxes.getContext("2d");
  draw.clearRect(0, 0, boxes.width, boxes.height);
  const place = placement || { scale: pad.width / result.width, x: 0, y: 0 };
  draw.lineWidth = 2;
  draw.font = "bold 16px sans-serif";
  for (const c of result.characters) {
    const [left, top, right, bottom] = c.box.map((v) => v * place.scale);
    draw.strokeStyle = draw.fillStyle = c.digit_like ? "#0a8a0a" : "#c00000";
    draw.strokeRect(left + place.x, top + place.y, right - left, bottom - top);
    draw.fillText(c.digit_like ? String(c.digit) : "?", left + place.x + 2,
                  Math.max(14, top + place.y - 3));
  }
}

function showReading(result) {
  resetReading("");
  const noDigit = result.status === "not_digits";
  prediction.textContent = noDigit ? "\u2205" : result.text;
  confidence.textContent = noDigit ? "Not a digit."
    : `${(100 * result.confidence).toFixed(1)}% sure` +
      (result.status === "unsure" ? ", unsure" : "");
  const first = result.characters.find((c) => c.digit_like) || result.characters[0];
  const shown = result.probabilities || (first && first.probabilities) || [];
  const top = result.probabilities ? result.prediction : first && first.digit;
  shown.forEach((p, digit) => {
    const row = bars.children[digit];
    row.classList.toggle("top", digit === top);
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".pct").textContent = `${(100 * p).toFixed(1)}%`;
  });
  if (result.characters.length > 1) {
    characters.textContent = result.characters.map((c) => c.digit_like
      ? `${c.digit} (${(100 * c.confidence).toFixed(0)}%)` : "not a digit").join(", ");
  }
  drawBoxes(result);
  const picture = seen.getContext("2d").createImageData(28, 28);
  result.digit.flat().forEach((grey, i) => {
    picture.data.set([grey, grey, grey, 255], 4 * i);
  });
  seen.getContext("2d").putImageData(picture, 0, 0);
  showStatus(result.inverted ? "Read as dark ink on a light background."
                             : "Read as light ink on a dark background.");
}

// One request at a time; a newer picture waits and replaces any older one waiting.
// `read` takes over one `busy(+1)` made by its caller.
function read(picture) {
  if (inFlight) {
    if (queued) busy(-1);  // the older waiting picture is dropped
    queued = picture;
    return;
  }
  inFlight = true;
  lastSent = performance.now();
  send(picture).finally(() => {
    inFlight = false;
    busy(-1);
    if (queued) {
      const next = queued;
      queued = null;
      read(next);
    }
  });
}

async function send(picture) {
  const asked = generation;
  showStatus("Reading\u2026");
  try {
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": picture.type || "application/octet-stream" },
      body: picture,
    });
    const result = await response.json();
    if (asked !== generation) {
      return;
    } else if (response.ok) {
      showReading(result);
    } else {
      resetReading("");
      showStatus(result.error || `The server answered ${response.status}.`, true);
    }
  } catch (error) {
    if (asked !== generation) return;
    resetReading("");
    showStatus(`Could not reach the server: ${error.message}`, true);
  }
}

function readPad() {
  busy(+1);
  lastSent = performance.now();
  pad.toBlob((blob) => (blob ? read(blob) : busy(-1)), "image/png");
}

// Drawing
function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

function strokeTo(event) {
  const [x, y] = point(event);
  context.beginPath();
  context.moveTo(drawing.x, drawing.y);
  context.lineTo(x, y);
  context.stroke();
  drawing.x = x;
  drawing.y = y;
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || drawing) return;
  event.preventDefault();
  placement = null;  // what is read now is the pad itself
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  drawing = { id: event.pointerId, x, y };
  context.lineWidth = pad.width / 14;
  context.lineCap = "round";
  context.lineJoin = "round";
  context.strokeStyle = "#000";
  context.fillStyle = "#000";
  context.beginPath();
  context.arc(x, y, context.lineWidth / 2, 0, 2 * Math.PI);
  context.fill();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing || event.pointerId !== drawing.id) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of (events.length ? events : [event])) strokeTo(e);
  if (!inFlight && performance.now() - lastSent > WHILE_DRAWING_MS) readPad();
});

function endStroke(event) {
  if (!drawing || event.pointerId !== drawing.id) return;
  drawing = null;
  readPad();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  blankPad();
  placement = null;
  generation += 1;
  if (queued) busy(-1);
  queued = null;
  resetReading("Draw a digit to start.");
});

pad.addEventListener("keydown", (event) => {
  if (event.key === "Delete" || event.key === "Backspace" || event.key === "Escape") {
    document.getElementById("clear").click();
  }
});

// Pictures: upload, camera, drop
async function usePicture(file) {
  if (!file) return;
  if (file.size > MAX_BYTES) {
    resetReading("");
    showStatus(`${file.name} is over the 10 MB limit.`, true);
    return;
  }
  blankPad();
  generation += 1;
  placement = { scale: 0, x: 0, y: 0 };  // no boxes unless the picture is shown
  try {  // show it on the pad when the browser can decode it; the server reads the file
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    context.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    placement = { scale, x: (pad.width - w) / 2, y: (pad.height - h) / 2 };
    } catch (error) {
    // not shown here (a format this browser cannot draw); the server may still read it
  }
  busy(+1);
  read(file);
}

for (const id of ["upload", "camera"]) {
  const input = document.getElementById(id);
  input.addEventListener("change", () => {
    usePicture(input.files[0]);
    input.value = "";
  });
}

for (const name of ["dragenter", "dragover"]) {
  dropzone.addEventListener(name, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
}
dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropzone.classList.remove("dragging");
  usePicture(event.dataTransfer.files[0]);
});
// A picture dropped beside the pad should not make the browser leave the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

buildBars();
blankPad();
resetReading("Draw a digit to start.");
