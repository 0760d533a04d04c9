"""``CREATE SCHEMA`` and ``DROP SCHEMA``: datasets made and removed by DDL.

As BigQuery documents them (cloud.google.com/bigquery/docs/reference/standard-sql/
data-definition-language, "CREATE SCHEMA statement" / "DROP SCHEMA statement"):
``CREATE SCHEMA [IF NOT EXISTS] [project.]name [OPTIONS(...)]`` creates the dataset
(an existing one is an ``Already Exists`` error unless ``IF NOT EXISTS``);
``DROP SCHEMA [IF EXISTS] [project.]name [CASCADE | RESTRICT]`` deletes it, refusing a
dataset that still holds tables or routines unless ``CASCADE`` (``RESTRICT`` is the
default).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from .catalog import Catalog
from .errors import BigQueryError, invalid_query
from .outcome import Outcome

#: OPTIONS of CREATE SCHEMA → the dataset resource's fields.
_OPTIONS = {
    "description": "description",
    "friendly_name": "friendlyName",
    "location": "location",
    "default_table_expiration_days": "defaultTableExpirationMs",
    "labels": "labels",
}


def dataset_of(node: exp.Expr, project: str) -> tuple[str, str]:
    """(project, dataset) named by a ``CREATE/DROP SCHEMA`` target: ``ds``, ``p.ds``,
    ```p.ds``` or ```p`.`ds```."""
    target = node.this if isinstance(node, exp.Create) else (node.args.get("tables") or [None])[0]
    if not isinstance(target, exp.Table):
        raise invalid_query("Syntax error: expected a dataset name")
    parts = [p for part in target.parts for p in part.name.split(".") if p]
    if len(parts) == 1:
        return project, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise invalid_query(f"Invalid dataset name: {'.'.join(parts)}")


def create(catalog: Catalog, node: exp.Create, project: str) -> Outcome:
    owner, dataset_id = dataset_of(node, project)
    with catalog.lock:
        if (owner, dataset_id) in catalog.datasets:
            if node.args.get("exists"):
                return Outcome(ddl_operation="SKIP")
            raise BigQueryError(409, "duplicate", f"Already Exists: Dataset {owner}:{dataset_id}")
        body: dict[str, Any] = {"datasetReference": {"datasetId": dataset_id}}
        properties = node.args.get("properties")
        for prop in properties.expressions if properties is not None else []:
            if isinstance(prop, exp.LocationProperty):
                body["location"] = prop.this.name
                continue
            if not isinstance(prop, exp.Property):
                continue
            name = prop.name.lower()
            if name not in _OPTIONS:
                raise invalid_query(f"Unknown option for CREATE SCHEMA: {name}")
            body[_OPTIONS[name]] = _option_value(name, prop.args.get("value"))
        catalog.create_dataset(owner, body)
    return Outcome(ddl_operation="CREATE")


def drop(catalog: Catalog, node: exp.Drop, project: str) -> Outcome:
    owner, dataset_id = dataset_of(node, project)
    with catalog.lock:
        if (owner, dataset_id) not in catalog.datasets:
            if node.args.get("exists"):
                return Outcome(ddl_operation="SKIP")
            catalog.get_dataset(owner, dataset_id)  # raises notFound
        catalog.delete_dataset(owner, dataset_id, delete_contents=bool(node.args.get("cascade")))
    return Outcome(ddl_operation="DROP")


def _option_value(name: str, value: exp.Expr | None) -> Any:
    if value is None:
        return None
    if name == "labels":
        return {
            t.expressions[0].name: t.expressions[1].name
            for t in value.find_all(exp.Tuple)
            if len(t.expressions) == 2
        }
    if name == "default_table_expiration_days":
        return str(int(float(value.name) * 86_400_000))
    return value.name
