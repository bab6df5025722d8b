from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Book",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=200)),
                ("author", models.CharField(max_length=200)),
                ("slug", models.SlugField(unique=True)),
            ],
            options={"ordering": ["title"]},
        ),
        migrations.CreateModel(
            name="Census",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("taken_at", models.DateTimeField(auto_now_add=True)),
                ("books", models.PositiveIntegerField()),
                ("taken_by", models.CharField(max_length=200)),
            ],
            options={"ordering": ["-taken_at"]},
        ),
    ]
