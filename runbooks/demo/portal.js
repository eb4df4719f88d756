/* Shared by every page of the Acme Supplier Portal: the signed-in user and the top bar. */
(function () {
  "use strict";

  var USER_KEY = "acme.portal.user";

  function currentUser() {
    try {
      return window.sessionStorage.getItem(USER_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function signIn(username) {
    window.sessionStorage.setItem(USER_KEY, username);
  }

  function signOut() {
    window.sessionStorage.removeItem(USER_KEY);
  }

  /* Format a number as 1,234.56 (fixed, locale-independent so pages stay deterministic). */
  function formatAmount(value) {
    var parts = Number(value).toFixed(2).split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return parts.join(".");
  }

  function initTopBar() {
    var user = currentUser();
    var nameEls = document.querySelectorAll("[data-user]");
    Array.prototype.forEach.call(nameEls, function (el) {
      el.textContent = user || "guest";
    });

    var signOutLink = document.getElementById("sign-out");
    if (signOutLink) {
      signOutLink.textContent = user ? "Sign out" : "Sign in";
      signOutLink.addEventListener("click", function () {
        signOut();
      });
    }

    var page = document.body.getAttribute("data-page");
    var links = document.querySelectorAll(".nav a[data-page]");
    Array.prototype.forEach.call(links, function (link) {
      if (link.getAttribute("data-page") === page) {
        link.classList.add("active");
        link.setAttribute("aria-current", "page");
      }
    });
  }

  window.Portal = {
    currentUser: currentUser,
    signIn: signIn,
    signOut: signOut,
    formatAmount: formatAmount
  };

  document.addEventListener("DOMContentLoaded", initTopBar);
})();
