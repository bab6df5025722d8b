// Numbers the books, so a page shows whether its script arrived.
document.querySelectorAll(".book").forEach((book, index) => {
  book.dataset.position = String(index + 1);
});
