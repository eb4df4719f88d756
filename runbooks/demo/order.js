/* Order form: validates, then shows a confirmation (no server involved).
   The order number is derived from the reference, so the same reference
   always gives the same number: ACME- followed by five digits. */
(function () {
  "use strict";

  var form = document.getElementById("order-form");
  var error = document.getElementById("order-error");
  var confirmation = document.getElementById("confirmation");
  var attachment = document.getElementById("attachment");
  var attachmentName = document.getElementById("attachment-name");

  function value(id) {
    return document.getElementById(id).value.trim();
  }

  function checked(id) {
    return document.getElementById(id).checked;
  }

  function orderNumber(reference) {
    var hash = 7;
    var text = reference.toUpperCase();
    for (var i = 0; i < text.length; i += 1) {
      hash = (hash * 31 + text.charCodeAt(i)) % 100000;
    }
    return "ACME-" + String(hash).padStart(5, "0");
  }

  function fileName() {
    return attachment.files && attachment.files.length ? attachment.files[0].name : "";
  }

  function validate() {
    if (!value("supplier") || !value("reference")) {
      return "Enter a supplier and a purchase order reference.";
    }
    var quantity = Number(value("quantity"));
    if (!Number.isInteger(quantity) || quantity < 1) {
      return "Quantity must be a whole number of at least 1.";
    }
    if (!checked("terms")) {
      return "You must accept the terms of purchase.";
    }
    return "";
  }

  function setText(id, text) {
    document.getElementById(id).textContent = text;
  }

  function submit() {
    var problem = validate();
    if (problem) {
      error.textContent = problem;
      error.hidden = false;
      return;
    }
    error.hidden = true;

    var priority = document.getElementById("priority");
    setText("order-number", orderNumber(value("reference")));
    setText("confirm-supplier", value("supplier"));
    setText("confirm-reference", value("reference"));
    setText("confirm-quantity", String(Number(value("quantity"))));
    setText("confirm-priority", priority.options[priority.selectedIndex].text);
    setText("confirm-express", checked("express") ? "Yes" : "No");
    setText("confirm-newsletter", checked("newsletter") ? "Yes" : "No");
    setText("confirm-notes", value("notes") || "—");
    setText("confirm-attachment", fileName() || "—");

    form.hidden = true;
    confirmation.hidden = false;
    confirmation.scrollIntoView();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
  });

  /* Enter in the reference field submits the order. */
  document.getElementById("reference").addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      submit();
    }
  });

  attachment.addEventListener("change", function () {
    attachmentName.textContent = fileName() || "No file chosen";
  });

  document.getElementById("another-order").addEventListener("click", function () {
    form.reset();
    attachmentName.textContent = "No file chosen";
    confirmation.hidden = true;
    form.hidden = false;
    document.getElementById("supplier").focus();
  });
})();
