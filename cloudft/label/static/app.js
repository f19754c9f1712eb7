// Keyboard shortcuts for the labeling form: 1/a = A, 2/b = B, 3/t = tie, 0/s = skip.
// Keys typed into the rationale box are left alone. A form is submitted at most once.
(function () {
  "use strict";
  var form = document.getElementById("label-form");
  if (!form) { return; }
  var keys = { "1": "A", "a": "A", "2": "B", "b": "B", "3": "tie", "t": "tie", "0": "skip", "s": "skip" };
  var sent = false;
  form.addEventListener("submit", function (ev) {
    if (sent) { ev.preventDefault(); return; }
    sent = true;
  });
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target && ev.target.tagName) || "";
    if (tag === "TEXTAREA" || tag === "INPUT" || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var choice = keys[ev.key];
    if (!choice) { return; }
    ev.preventDefault();
    var button = document.getElementById("choose-" + choice);
    if (button && !sent) { button.click(); }
  });
})();
