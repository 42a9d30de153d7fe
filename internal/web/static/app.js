// mailtls web checker: live progress (server-sent events) and copy
// buttons. The pages work without this script.
"use strict";

(function () {
  // Copy buttons next to every copyable block.
  function addCopyButtons() {
    var live = document.createElement("p");
    live.className = "visually-hidden";
    live.setAttribute("role", "status");
    document.body.appendChild(live);
    document.querySelectorAll("pre.copy").forEach(function (pre) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "copy-button";
      var what = pre.getAttribute("aria-label") || "text";
      // The accessible name starts with the visible word (WCAG 2.5.3).
      var say = function (word) {
        b.textContent = word;
        b.setAttribute("aria-label", word + ": " + what);
      };
      say("Copy");
      b.addEventListener("click", function () {
        var text = pre.textContent;
        var done = function () {
          say("Copied");
          live.textContent = what + " copied to the clipboard";
          setTimeout(function () { say("Copy"); }, 2000);
        };
        var fail = function () {
          say("Select and copy");
          live.textContent = "Copying failed; select the text and copy it";
          var range = document.createRange();
          range.selectNodeContents(pre);
          var sel = window.getSelection();
          sel.removeAllRanges();
          sel.addRange(range);
        };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(text).then(done, fail);
        } else {
          fail();
        }
      });
      pre.parentNode.insertBefore(b, pre.nextSibling);
    });
  }

  var statusWords = {
    ok: ["\u2713", "OK"],
    absent: ["\u2013", "Absent"],
    undetermined: ["?", "Could not tell"],
    failed: ["\u2717", "Failed"],
    blocked: ["\u2298", "Not connected"],
    stopped: ["\u23f1", "Stopped"],
    skipped: ["\u2013", "Not probed"]
  };
  var stageTitles = {
    "mta-sts-record": "MTA-STS record",
    "policy-host": "Policy host",
    "policy": "Policy file",
    "mx": "MX records",
    "mx-host": "MX host addresses",
    "smtp": "STARTTLS on each MX address",
    "dane": "DANE",
    "tls-rpt": "TLS-RPT record",
    "dnssec": "DNSSEC validation"
  };

  // span makes an element with text; remote content is only ever set as
  // text, never as HTML.
  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function eventItem(ev) {
    var li = document.createElement("li");
    var w = statusWords[ev.status] || ["", ev.status];
    li.className = "ev st-" + ev.status;
    var st = span("status st-" + ev.status, "");
    var icon = span("icon", w[0]);
    icon.setAttribute("aria-hidden", "true");
    st.appendChild(icon);
    st.appendChild(document.createTextNode(" "));
    st.appendChild(span("word", w[1]));
    li.appendChild(st);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(span("stage", stageTitles[ev.stage] || ev.stage));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(span("subject", ev.subject));
    li.appendChild(document.createTextNode(": "));
    li.appendChild(span("text", ev.text));
    return li;
  }

  function followProgress() {
    var box = document.getElementById("progress");
    if (!box || !window.EventSource) {
      return;
    }
    var id = box.getAttribute("data-scan");
    var seen = box.getAttribute("data-seen") || "0";
    var list = document.getElementById("stages");
    var state = document.getElementById("state");
    var note = box.querySelector(".nojs");
    if (note) {
      note.textContent = "Each stage appears as it finishes; the report follows when the scan is done.";
    }
    var es = new EventSource("/api/v1/scans/" + encodeURIComponent(id) + "/events?after=" + encodeURIComponent(seen));
    es.addEventListener("state", function (e) {
      var d = JSON.parse(e.data);
      if (d.state === "queued") {
        state.textContent = "Waiting for a free scanner" + (d.queue_position ? " (number " + d.queue_position + " in the queue)" : "") + "\u2026";
      } else if (d.state === "running") {
        state.textContent = "Scanning: each stage appears below as it finishes.";
      }
    });
    es.addEventListener("step", function (e) {
      list.appendChild(eventItem(JSON.parse(e.data)));
    });
    es.addEventListener("end", function (e) {
      es.close();
      var d = JSON.parse(e.data);
      state.textContent = d.state === "done" ? "Done. Loading the report\u2026" : "The scan failed.";
      window.location.replace(d.page);
    });
  }

  // Printing shows every evidence section.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });

  document.addEventListener("DOMContentLoaded", function () {
    addCopyButtons();
    followProgress();
  });
})();
