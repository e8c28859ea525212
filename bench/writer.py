"""The benchmark's source: realistic product changes (about 1 KB documents), in its own process.

Inserts new products in batches and, for a share of the changes, updates the stock and price of
products already written, the way a shop's inventory moves. Runs at full speed, or paced to a
rate for the latency runs. Prints one JSON line with what it wrote; never reads change streams.
"""

import argparse
import datetime as dt
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from bson import Decimal128, ObjectId
from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection

_CATEGORIES = ("lácteos", "panadería", "bebidas", "limpieza", "conservas", "frescos", "higiene")
_WORDS = (
    *("orgánico", "integral", "natural", "clásico", "familiar", "ahorro", "selección"),
    *("premium", "fresco", "artesanal", "tradicional", "ligero", "extra", "suave"),
    *("intenso", "reserva", "local", "temporada", "granel", "envase"),
)
_EDITORS = ("ana@example.com", "luis@example.com", "marta@example.com", "caja-01", "caja-03")


@dataclass(frozen=True)
class WriteResult:
    inserts: int
    updates: int
    seconds: float

    @property
    def changes(self) -> int:
        return self.inserts + self.updates

    @property
    def rate(self) -> float:
        return self.changes / self.seconds if self.seconds else 0.0


def product(rng: random.Random, number: int) -> dict[str, Any]:
    """One product document of about 1 KB (BSON), with the fields a real catalogue carries."""
    words = rng.sample(_WORDS, 4)
    description = " ".join(rng.choice(_WORDS) for _ in range(70))
    return {
        "_id": ObjectId(),
        "sku": f"SKU-{number:08d}",
        "nombreProducto": f"{words[0].capitalize()} {words[1]} {number}",
        "cantidad": rng.randint(0, 200),
        "precio": Decimal128(f"{rng.randint(50, 9999) / 100:.2f}"),
        "categoria": rng.choice(_CATEGORIES),
        "etiquetas": words,
        "descripcion": description[:520],
        "proveedor": {
            "nombre": f"Proveedor {rng.randint(1, 300)}",
            "pais": rng.choice(("ES", "MX", "AR", "CO", "CL")),
            "contacto": f"ventas{rng.randint(1, 99)}@proveedor.example",
        },
        "dimensiones": {"altoCm": rng.randint(5, 40), "anchoCm": rng.randint(5, 40)},
        "activo": True,
        "createdBy": rng.choice(_EDITORS),
        "createdAt": dt.datetime.now(dt.UTC),
    }


def stock_update(rng: random.Random, document_id: ObjectId) -> UpdateOne:
    """A sale or a restock: new quantity, sometimes a new price, and who did it."""
    fields: dict[str, Any] = {"cantidad": rng.randint(0, 200), "updatedBy": rng.choice(_EDITORS)}
    if rng.random() < 0.2:
        fields["precio"] = Decimal128(f"{rng.randint(50, 9999) / 100:.2f}")
    return UpdateOne({"_id": document_id}, {"$set": fields, "$currentDate": {"updatedAt": True}})


def _batch_sizes(total: int, batch: int) -> Iterator[int]:
    written = 0
    while written < total:
        size = min(batch, total - written)
        written += size
        yield size


def write_changes(
    collection: Collection[Any],
    *,
    changes: int,
    update_share: float = 0.25,
    batch: int = 500,
    rate: float | None = None,
    seed: int = 7,
) -> WriteResult:
    """Write `changes` change events (inserts, then updates of written products, interleaved).

    With `rate`, batches are paced so the changes are spread at that many per second.
    """
    rng = random.Random(seed)
    written_ids: list[ObjectId] = []
    inserts = updates = 0
    started = time.perf_counter()
    for size in _batch_sizes(changes, batch):
        update_count = int(size * update_share) if written_ids else 0
        insert_count = size - update_count
        documents = [product(rng, inserts + index) for index in range(insert_count)]
        collection.insert_many(documents, ordered=True)
        written_ids.extend(document["_id"] for document in documents)
        inserts += insert_count
        if update_count:
            targets = rng.choices(written_ids, k=update_count)
            collection.bulk_write([stock_update(rng, target) for target in targets])
            updates += update_count
        if rate:
            # Pace: the next batch starts when the changes so far are due.
            due = started + (inserts + updates) / rate
            time.sleep(max(0.0, due - time.perf_counter()))
    return WriteResult(inserts, updates, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--changes", type=int, required=True)
    parser.add_argument("--update-share", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=None, help="changes/s; default full speed")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    client: MongoClient[Any] = MongoClient(args.uri)
    try:
        result = write_changes(
            client[args.database][args.collection],
            changes=args.changes,
            update_share=args.update_share,
            batch=args.batch,
            rate=args.rate,
            seed=args.seed,
        )
    finally:
        client.close()
    print(json.dumps({**asdict(result), "changes": result.changes, "rate": result.rate}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
