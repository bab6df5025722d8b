from django.db import models


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Census(models.Model):
    """One row per run of shelf.tasks.take_census: the worker's proof of writing to the database."""

    taken_at = models.DateTimeField(auto_now_add=True)
    books = models.PositiveIntegerField()
    taken_by = models.CharField(max_length=200)

    class Meta:
        ordering = ["-taken_at"]
