/* Small progressive enhancements of the portal; every page works without them. */
(function () {
  "use strict";

  function closeMenus(except) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }

  document.addEventListener("click", function (event) {
    var menu = event.target.closest("details[data-menu]");
    closeMenus(menu);

    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) dismiss.closest(".flash").remove();

    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var input = document.getElementById(copy.getAttribute("data-copy"));
      input.select();
      var label = copy.querySelector("span");
      var done = function () { if (label) label.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done);
      } else {
        try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
      }
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details[data-menu][open]");
    if (open) {
      open.removeAttribute("open");
      open.querySelector("summary").focus();
    }
  });

  // Ask before an action whose button carries data-confirm.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var message = button && button.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // A role select shows its Save button only once its value differs from the saved one.
  function initAutosave(root) {
    root.querySelectorAll("select[data-autosave]:not([data-ready])").forEach(function (select) {
      var form = select.form;
      select.setAttribute("data-ready", "");
      // The saved value is the option the server marked selected, whatever was picked since.
      var saved = Array.prototype.find.call(select.options, function (o) { return o.defaultSelected; });
      var update = function () { form.classList.toggle("is-clean", !saved || select.value === saved.value); };
      select.addEventListener("change", update);
      update();
    });
  }

  if (window.htmx) {
    window.htmx.onLoad(initAutosave);  // the page, then every piece htmx swaps in
  } else {
    document.addEventListener("DOMContentLoaded", function () { initAutosave(document); });
  }
})();
