/* One-time codes for the handoff demo: the "phone" shows the code of this minute, the sign-in page takes
   this minute's or the last one's. Both pages work it out from the clock alone (no server). */
(function () {
  "use strict";

  function codeAt(minute) {
    return String((minute * 7919 + 104729) % 1000000).padStart(6, "0");
  }

  function minute() {
    return Math.floor(Date.now() / 60000);
  }

  window.demoCode = {
    current: function () { return codeAt(minute()); },
    accepts: function (code) { return code === codeAt(minute()) || code === codeAt(minute() - 1); },
  };

  var shown = document.getElementById("phone-code");
  if (shown) {
    var show = function () { shown.textContent = window.demoCode.current(); };
    show();
    window.setInterval(show, 5000);
  }

  var form = document.getElementById("verify-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var code = document.getElementById("code").value.trim();
      var error = document.getElementById("code-error");
      if (!window.demoCode.accepts(code)) {
        error.hidden = false;
        return;
      }
      error.hidden = true;
      form.hidden = true;
      var done = document.createElement("p");
      done.id = "dashboard";
      done.className = "status-widget";
      done.textContent = "Signed in: welcome to your dashboard";
      document.querySelector("main").appendChild(done);
    });
  }
})();
