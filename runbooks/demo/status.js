/* Status dashboard: the status widget is "loaded" after about 1.5 seconds,
   so runbooks have to wait for #system-status before reading it. */
(function () {
  "use strict";

  var DELAY_MS = 1500;

  window.setTimeout(function () {
    var slot = document.getElementById("status-slot");
    var loading = document.getElementById("status-loading");
    if (loading) {
      loading.remove();
    }
    var widget = document.createElement("p");
    widget.id = "system-status";
    widget.className = "status-widget";
    widget.setAttribute("data-state", "operational");
    widget.textContent = "All systems operational";
    slot.appendChild(widget);
  }, DELAY_MS);
})();
