// the hand-off page's copy button (channels/handoff.py)
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy");
  var text = document.getElementById("text");
  if (!button || !text) return;
  button.addEventListener("click", function () {
    function shown() { document.getElementById("copied").hidden = false; }
    function fallback() { text.select(); document.execCommand("copy"); shown(); }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text.value).then(shown, fallback);
    } else {
      fallback();
    }
  });
});
