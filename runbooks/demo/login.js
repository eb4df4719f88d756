/* Sign-in form: any non-empty username and password are accepted. */
(function () {
  "use strict";

  var form = document.getElementById("login-form");
  var error = document.getElementById("login-error");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var username = document.getElementById("username").value.trim();
    var password = document.getElementById("password").value;
    if (!username || !password) {
      error.hidden = false;
      return;
    }
    error.hidden = true;
    Portal.signIn(username);
    window.location.href = "invoices.html";
  });
})();
