// Tap to zoom. On a phone a figure is shrunk to the width of the screen, and the text inside it becomes too
// small to read; each figure therefore links to its own image file, which the browser shows alone and lets
// the reader zoom (Sphinx links the images it scales itself in the same way).
document.addEventListener("DOMContentLoaded", function () {
  var images = document.querySelectorAll(".bd-content .cell_output img, .bd-content figure img");
  for (var i = 0; i < images.length; i++) {
    var img = images[i];
    if (img.closest("a")) continue;
    var link = document.createElement("a");
    link.href = img.getAttribute("src");
    link.className = "figure-zoom";
    link.title = "The figure alone, to zoom in";
    img.parentNode.insertBefore(link, img);
    link.appendChild(img);
  }
});
