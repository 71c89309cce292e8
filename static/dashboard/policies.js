// Policies pages, progressively enhanced: without this script the editor is a plain textarea whose
// problems are listed with their lines, and the simulator answers with a whole page.
(function () {
  "use strict";

  // The YAML editor: a line-number gutter and a marker on each line a problem names. The
  // textarea does not wrap (wrap="off"), so line N is always row N of the gutter.
  function CodeEditor(box) {
    var editor = box.querySelector("textarea");
    var gutter = document.createElement("div");
    var numbers = document.createElement("div");
    var marks = document.createElement("div");
    var problems = {};
    var drawn = "";
    gutter.className = "gutter";
    marks.className = "line-marks";
    gutter.setAttribute("aria-hidden", "true");  // the problem list is what assistive tech reads
    marks.setAttribute("aria-hidden", "true");
    gutter.appendChild(numbers);
    box.insertBefore(gutter, editor);
    box.appendChild(marks);
    box.classList.add("enhanced");

    function metrics() {
      var style = getComputedStyle(editor);
      return {line: parseFloat(style.lineHeight) || 18, top: parseFloat(style.paddingTop) || 0};
    }

    function draw() {
      var count = editor.value.split("\n").length;
      var key = count + "|" + Object.keys(problems).join(",");
      if (key !== drawn) {
        drawn = key;
        var m = metrics();
        numbers.textContent = "";
        marks.textContent = "";
        numbers.style.paddingTop = m.top + "px";
        for (var n = 1; n <= count; n++) {
          var row = document.createElement("div");
          row.textContent = String(n);
          row.style.height = m.line + "px";
          if (problems[n]) {
            row.className = "bad";
            row.title = problems[n];
            var band = document.createElement("div");
            band.className = "mark";
            band.dataset.line = String(n);
            band.style.height = m.line + "px";
            band.dataset.offset = String(m.top + (n - 1) * m.line);
            band.title = problems[n];
            marks.appendChild(band);
          }
          numbers.appendChild(row);
        }
      }
      follow();
    }

    function follow() {  // the gutter and the markers scroll with the text
      numbers.style.transform = "translateY(" + (-editor.scrollTop) + "px)";
      marks.querySelectorAll(".mark").forEach(function (band) {
        band.style.transform = "translateY(" + (parseFloat(band.dataset.offset) - editor.scrollTop) + "px)";
      });
    }

    function reveal(line) {
      var m = metrics();
      var top = m.top + (line - 1) * m.line;
      if (top < editor.scrollTop || top + m.line > editor.scrollTop + editor.clientHeight) {
        editor.scrollTop = Math.max(0, top - editor.clientHeight / 3);
      }
      follow();
      // Then the page, so that the line itself is on screen, not only inside the textarea.
      var onScreen = editor.getBoundingClientRect().top + top - editor.scrollTop;
      if (onScreen < 0 || onScreen + m.line > window.innerHeight) window.scrollBy(0, onScreen - window.innerHeight / 3);
    }

    // Reads the problems from the list the server rendered (after saving, or from htmx). While
    // the admin types, the view stays where the caret is; otherwise the first bad line is shown.
    this.showProblems = function (list) {
      problems = {};
      var first = 0;
      (list ? list.querySelectorAll("[data-line]") : []).forEach(function (link) {
        var line = parseInt(link.getAttribute("data-line"), 10);
        if (!line) return;
        problems[line] = link.parentNode.textContent.trim();
        if (!first || line < first) first = line;
      });
      editor.setAttribute("aria-invalid", first || (list && list.querySelector(".problems:not(.ok)")) ? "true" : "false");
      draw();
      if (first && document.activeElement !== editor) reveal(first);
    };

    editor.addEventListener("input", draw);
    editor.addEventListener("scroll", follow);
    window.addEventListener("resize", function () { drawn = ""; draw(); });
    document.querySelectorAll("[data-no-js-listing]").forEach(function (e) { e.hidden = true; });
  }

  var box = document.querySelector("[data-code-editor]");
  var problemsBox = document.getElementById("problems-box");
  if (box && box.querySelector("textarea")) {
    var codeEditor = new CodeEditor(box);
    codeEditor.showProblems(problemsBox);
    document.body.addEventListener("htmx:afterSwap", function (event) {
      if (event.detail.target === problemsBox) codeEditor.showProblems(problemsBox);
    });
  }

  // The simulator answers an invalid request (bad JSON arguments, an unknown agent) with 400 and
  // the error in place of the result; htmx leaves 4xx answers unswapped unless told to.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (event.detail.xhr.status === 400 && target && target.id === "simulation") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
