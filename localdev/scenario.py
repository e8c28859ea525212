"""The demo's story on `clase.productos`, and the reactions it must cause, for demo and e2e tests.

Insert products (some above, some at or below the threshold of 10), sell stock down across the
threshold, restock one, change a price, remove a field, replace one, delete one. Each step says
which stock alerts, change notifications and audit records it causes, so the demo can wait for
them and the tests can demand exactly those, once each.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bson import Decimal128, ObjectId

Write = Callable[[Any], None]


@dataclass(frozen=True)
class Alert:
    product: str
    level: str  # LOW_STOCK | OUT_OF_STOCK
    quantity: int


@dataclass(frozen=True)
class Step:
    """One write on the collection, and what it should cause."""

    say: str
    write: Write
    alerts: tuple[Alert, ...] = ()
    notifications: tuple[str, ...] = ()  # product ids (str) whose update is notified
    audits: tuple[tuple[str, str], ...] = ()  # (operationType, product id)


@dataclass
class Product:
    name: str
    quantity: int
    extra: dict[str, Any] = field(default_factory=dict)
    id: ObjectId = field(default_factory=ObjectId)

    @property
    def key(self) -> str:
        return str(self.id)

    def document(self, actor: str) -> dict[str, Any]:
        return {
            "_id": self.id,
            "nombreProducto": self.name,
            "cantidad": self.quantity,
            **self.extra,
            "createdBy": actor,
        }


@dataclass
class Scenario:
    products: dict[str, Product]
    steps: list[Step]

    @property
    def alerts(self) -> list[Alert]:
        return [alert for step in self.steps for alert in step.alerts]

    @property
    def notifications(self) -> list[str]:
        return [key for step in self.steps for key in step.notifications]

    @property
    def audits(self) -> list[tuple[str, str]]:
        return [audit for step in self.steps for audit in step.audits]


def _sell(product: Product, units: int, actor: str) -> Write:
    def write(collection: Any) -> None:
        collection.update_one(
            {"_id": product.id}, {"$inc": {"cantidad": -units}, "$set": {"updatedBy": actor}}
        )

    return write


def build(tag: str = "") -> Scenario:
    """The scenario; `tag` is appended to every product name so runs can share a database."""
    suffix = f" {tag}" if tag else ""
    leche = Product(f"Leche entera{suffix}", 25)
    pan = Product(f"Pan de molde{suffix}", 12)
    arroz = Product(f"Arroz largo{suffix}", 30, {"precio": Decimal128("1.20")})
    cafe = Product(f"Café molido{suffix}", 4)
    aceite = Product(f"Aceite de oliva{suffix}", 8, {"oferta": "2x1"})
    azucar = Product(f"Azúcar{suffix}", 15)
    products = {p.key: p for p in (leche, pan, arroz, cafe, aceite, azucar)}

    def insert_all(collection: Any) -> None:
        for product in products.values():
            collection.insert_one(product.document("almacen@tienda.example"))

    def restock(collection: Any) -> None:
        collection.update_one(
            {"_id": cafe.id}, {"$set": {"cantidad": 40, "updatedBy": "almacen@tienda.example"}}
        )

    def new_price(collection: Any) -> None:
        collection.update_one(
            {"_id": arroz.id},
            {"$set": {"precio": Decimal128("1.35"), "updatedBy": "precios@tienda.example"}},
        )

    def end_offer(collection: Any) -> None:
        collection.update_one(
            {"_id": aceite.id}, {"$unset": {"oferta": ""}, "$set": {"updatedBy": "marketing"}}
        )

    def replace(collection: Any) -> None:
        collection.replace_one(
            {"_id": azucar.id},
            {
                "nombreProducto": f"Azúcar moreno{suffix}",
                "cantidad": 20,
                "updatedBy": "almacen@tienda.example",
            },
        )

    def remove(collection: Any) -> None:
        collection.delete_one({"_id": arroz.id})

    inserts = tuple(("insert", key) for key in products)
    steps = [
        Step(
            "insert 6 products (Café molido 4 and Aceite de oliva 8 start at or below 10)",
            insert_all,
            alerts=(Alert(cafe.name, "LOW_STOCK", 4), Alert(aceite.name, "LOW_STOCK", 8)),
            audits=inserts,
        ),
        Step(
            "sell 3 Pan de molde: 12 -> 9, below the threshold",
            _sell(pan, 3, "caja-01"),
            alerts=(Alert(pan.name, "LOW_STOCK", 9),),
            notifications=(pan.key,),
            audits=(("update", pan.key),),
        ),
        Step(
            "sell 2 more Pan de molde: 9 -> 7, same low-stock episode, no new alert",
            _sell(pan, 2, "caja-02"),
            notifications=(pan.key,),
            audits=(("update", pan.key),),
        ),
        Step(
            "sell 14 Leche entera: 25 -> 11, still above",
            _sell(leche, 14, "caja-01"),
            notifications=(leche.key,),
            audits=(("update", leche.key),),
        ),
        Step(
            "sell 1 Leche entera: 11 -> 10, at the threshold",
            _sell(leche, 1, "caja-03"),
            alerts=(Alert(leche.name, "LOW_STOCK", 10),),
            notifications=(leche.key,),
            audits=(("update", leche.key),),
        ),
        Step(
            "sell the last 4 Café molido: 4 -> 0, out of stock",
            _sell(cafe, 4, "caja-02"),
            alerts=(Alert(cafe.name, "OUT_OF_STOCK", 0),),
            notifications=(cafe.key,),
            audits=(("update", cafe.key),),
        ),
        Step(
            "restock Café molido: 0 -> 40, the episode ends",
            restock,
            notifications=(cafe.key,),
            audits=(("update", cafe.key),),
        ),
        Step(
            "change the price of Arroz largo: 1.20 -> 1.35",
            new_price,
            notifications=(arroz.key,),
            audits=(("update", arroz.key),),
        ),
        Step(
            "remove the field `oferta` from Aceite de oliva",
            end_offer,
            notifications=(aceite.key,),
            audits=(("update", aceite.key),),
        ),
        Step(
            "replace Azúcar with Azúcar moreno (20)",
            replace,
            audits=(("replace", azucar.key),),
        ),
        Step("delete Arroz largo", remove, audits=(("delete", arroz.key),)),
    ]
    return Scenario(products, steps)
