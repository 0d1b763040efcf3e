"""Local training + evaluation time for 10,000 examples (target: under 30 s on this 2-core machine).

What is timed is exactly what a training job runs, on a throwaway database:

* ``train``    -- ``LocalTrainer.start``: read the JSONL train split from storage, fit on top of the live
                  version (its knowledge becomes the fallback tier), tune the threshold on the validation
                  split, write the artifact and register the candidate version;
* ``evaluate`` -- ``evaluate_versions``: candidate and live both answer every validation prompt, each
                  answer scored with ``answer_quality`` (cold model cache: artifacts are read and unpickled).

The data are synthetic FAQ-style questions: ``examples / 5`` topics with five paraphrases each (shared
vocabulary, words left out or added, word order changes, typos), answers of ~15 words; 90 % train,
10 % validation, as the data pipeline splits by default. The live version was trained on a different
2,000 examples.
"""

from __future__ import annotations

import json
import random
import tempfile

from bench.common import peak_rss_mb, setup_django, timer

TARGET_SECONDS = 30.0
VALIDATION_SHARE = 0.1


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def synthetic_examples(n: int, *, seed: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = _vocabulary(rng, 4000)
    starts = [
        "how do i",
        "can i",
        "where is my",
        "why is my",
        "what is the",
        "is it possible to",
        "help with",
    ]
    rows: list[tuple[str, str]] = []
    topics = max(1, n // 5)
    for _ in range(topics):
        core = rng.sample(words, 3)
        answer = " ".join(rng.choice(words) for _ in range(15)) + "."
        for _ in range(5):
            parts = core[:]
            if rng.random() < 0.5:  # customers leave words out...
                parts.pop(rng.randrange(len(parts)))
            parts += rng.sample(words, 2)  # ...and add their own
            rng.shuffle(parts)
            if rng.random() < 0.3:  # a typo
                i = rng.randrange(len(parts))
                parts[i] = parts[i][:-1]
            rows.append((f"{rng.choice(starts)} {' '.join(parts)}?", answer))
    rng.shuffle(rows)
    return rows[:n]


def _jsonl(pairs: list[tuple[str, str]]) -> bytes:
    return "\n".join(
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        for q, a in pairs
    ).encode()


def run(args) -> list[dict]:
    n = 2000 if getattr(args, "quick", False) else 10_000
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        setup_django(tmp)
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage
        from django.utils import timezone

        from assistants.backends import clear_model_cache
        from assistants.backends.local import LocalRetrievalModel
        from assistants.services import assistant_create, deployment_make_live
        from training.evaluation import evaluate_versions
        from training.models import TrainingDataset, TrainingJob
        from training.trainers.local import LocalTrainer, read_chat_jsonl, save_version_model

        assistant = assistant_create(slug="bench", name="Bench")
        old = synthetic_examples(2000, seed=2)
        live_model = LocalRetrievalModel.fit([q for q, _ in old], [a for _, a in old])
        live = save_version_model(model=live_model, assistant=assistant, base_version=None, metrics={})
        deployment_make_live(version=live, reason="initial")

        data = synthetic_examples(n, seed=1)
        cut = int(len(data) * (1 - VALIDATION_SHARE))
        train, validation = data[:cut], data[cut:]
        dataset = TrainingDataset.objects.create(
            assistant=assistant,
            format="chat_completion",
            train_file=default_storage.save("datasets/bench/train.jsonl", ContentFile(_jsonl(train))),
            validation_file=default_storage.save(
                "datasets/bench/validation.jsonl", ContentFile(_jsonl(validation))
            ),
            train_count=len(train),
            validation_count=len(validation),
        )
        now = timezone.now()
        job = TrainingJob.objects.create(
            assistant=assistant,
            trigger="manual",
            status="training",
            dataset=dataset,
            base_version=live,
            created_at=now,
            updated_at=now,
        )
        clear_model_cache()
        with timer() as t_train:
            outcome = LocalTrainer().start(job)
        clear_model_cache()
        with timer() as t_eval:
            examples = list(read_chat_jsonl(dataset.validation_file))
            report = evaluate_versions(candidate=outcome.model_version, live=live, examples=examples)
        total = t_train.seconds + t_eval.seconds
        metrics = outcome.metrics
        return [
            {
                "stage": "train (fit + tune + save)",
                "examples": len(train),
                "seconds": round(t_train.seconds, 2),
                "validation_accuracy": metrics["validation_accuracy"],
                "coverage": metrics["coverage"],
            },
            {
                "stage": "evaluate (candidate + live)",
                "examples": len(validation),
                "seconds": round(t_eval.seconds, 2),
                "validation_accuracy": report.candidate.accuracy,
                "coverage": None,
            },
            {
                "stage": f"total (target < {TARGET_SECONDS:.0f} s)",
                "examples": len(data),
                "seconds": round(total, 2),
                "validation_accuracy": None,
                "coverage": None,
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "within_target": total < TARGET_SECONDS,
            },
        ]
