"""Admins' own retrain conditions on a policy (issue 18, the seed's "Custom Retraining Logic")."""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0012_policy_retention_dataset_expiry"),
    ]

    operations = [
        migrations.CreateModel(
            name="RetrainCondition",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                (
                    "label",
                    models.CharField(
                        blank=True,
                        help_text="How the reason names it, e.g. Critical errors; empty: the metric's name.",
                        max_length=100,
                    ),
                ),
                (
                    "metric",
                    models.CharField(
                        choices=[
                            ("errors", "errored interactions (count)"),
                            ("rated_at_most", "feedback rated at most n (count)"),
                            ("comment_words", "comments mentioning words (count)"),
                            ("corrections", "corrections (count)"),
                            ("kind_share", "share of a feedback kind (0–1)"),
                            ("rating_average", "average rating (1–5)"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "rating_field",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("rating", "overall rating"),
                            ("accuracy", "accuracy"),
                            ("helpfulness", "helpfulness"),
                            ("tone", "tone"),
                            ("relevance", "relevance"),
                            ("completeness", "completeness"),
                        ],
                        help_text="Which rating: for 'rated at most n' and 'average rating'.",
                        max_length=16,
                        verbose_name="rating",
                    ),
                ),
                (
                    "at_most",
                    models.PositiveSmallIntegerField(
                        blank=True,
                        help_text="For 'rated at most n' (1–5).",
                        null=True,
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(5),
                        ],
                        verbose_name="n",
                    ),
                ),
                (
                    "words",
                    models.TextField(
                        blank=True,
                        help_text="For 'comments mentioning words': words or phrases, one per line or comma-separated; whole words in any case, a comment counts once.",
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("thumbs", "Thumbs"),
                            ("rating", "Rating"),
                            ("text", "Text"),
                            ("category", "Category"),
                            ("improvement", "Improvement"),
                            ("correction", "Correction"),
                        ],
                        help_text="For 'share of a feedback kind'.",
                        max_length=16,
                    ),
                ),
                (
                    "comparison",
                    models.CharField(
                        choices=[
                            (">", "> more than"),
                            (">=", "≥ at least"),
                            ("<", "< less than"),
                            ("<=", "≤ at most"),
                        ],
                        default=">",
                        max_length=2,
                    ),
                ),
                (
                    "threshold",
                    models.FloatField(help_text="A count: a whole number; a share: 0–1; an average: 1–5."),
                ),
                (
                    "window_length",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Count over the last this many hours or days; empty: since the last deployment.",
                        null=True,
                        validators=[django.core.validators.MinValueValidator(1)],
                        verbose_name="rolling window",
                    ),
                ),
                (
                    "window_unit",
                    models.CharField(
                        choices=[("hours", "Hours"), ("days", "Days")], default="hours", max_length=5
                    ),
                ),
                (
                    "policy",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="conditions",
                        to="training.retrainpolicy",
                    ),
                ),
            ],
            options={
                "ordering": ("policy", "id"),
            },
        ),
    ]
