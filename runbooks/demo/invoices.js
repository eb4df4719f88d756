/* Invoices page: filter rows by status and keep the count and total in step. */
(function () {
  "use strict";

  var filter = document.getElementById("status-filter");
  var rows = document.querySelectorAll("#invoices tbody tr");
  var count = document.getElementById("invoice-count");
  var total = document.getElementById("invoice-total");

  function amountOf(row) {
    return parseFloat(row.cells[2].textContent.replace(/,/g, "")) || 0;
  }

  function apply() {
    var wanted = filter.value;
    var shown = 0;
    var sum = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var visible = wanted === "all" || row.getAttribute("data-status") === wanted;
      row.hidden = !visible;
      if (visible) {
        shown += 1;
        sum += amountOf(row);
      }
    });
    count.textContent = shown + (shown === 1 ? " invoice" : " invoices");
    total.textContent = Portal.formatAmount(sum);
  }

  filter.addEventListener("change", apply);
  apply();
})();
