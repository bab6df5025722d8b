"""A data migration: the shelf starts with three books, removed again when migrating back."""

from django.db import migrations

BOOKS = [
    ("the-mythical-man-month", "The Mythical Man-Month", "Frederick P. Brooks Jr."),
    ("a-pattern-language", "A Pattern Language", "Christopher Alexander"),
    ("the-soul-of-a-new-machine", "The Soul of a New Machine", "Tracy Kidder"),
]


def add_books(apps, schema_editor):
    book = apps.get_model("shelf", "Book")
    for slug, title, author in BOOKS:
        book.objects.update_or_create(slug=slug, defaults={"title": title, "author": author})


def remove_books(apps, schema_editor):
    apps.get_model("shelf", "Book").objects.filter(slug__in=[slug for slug, _, _ in BOOKS]).delete()


class Migration(migrations.Migration):
    dependencies = [("shelf", "0001_initial")]
    operations = [migrations.RunPython(add_books, remove_books)]
