"""The dashboard's roles: viewer (read pages) and reviewer (viewer + approve, reject, curate, train, roll back)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_MODELS = {
    "assistants": ["assistant", "modelversion", "deployment"],
    "feedback": ["interaction", "feedback"],
    "abtesting": ["experiment"],
    "training": ["retrainpolicy", "trainingdataset", "trainingjob", "jobevent"],
}
REVIEWER_EXTRA = [
    ("training", "approve_trainingjob"),
    ("training", "trigger_trainingjob"),
    ("feedback", "curate_feedback"),
    ("assistants", "rollback_deployment"),
    ("abtesting", "change_experiment"),
]


def create_roles(apps, schema_editor):
    # Permissions are normally created after migrate; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = [
        Permission.objects.get(content_type__app_label=app, codename=f"view_{model}")
        for app, models in VIEW_MODELS.items()
        for model in models
    ]
    extra = [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in REVIEWER_EXTRA]
    viewer, _ = Group.objects.get_or_create(name="viewer")
    viewer.permissions.set(view)
    reviewer, _ = Group.objects.get_or_create(name="reviewer")
    reviewer.permissions.set(view + extra)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["viewer", "reviewer"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_initial"),
        ("assistants", "0001_initial"),
        ("feedback", "0001_initial"),
        ("abtesting", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
