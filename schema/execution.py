"""The execution context the schema runs with: graphql-core's executor (through
strawberry's) with short ways for the fields that make up almost every result.

A dashboard resolves ~300 scalar fields and the 100-affiliate list ~4,000; almost all are
plain attributes of a strawberry object (``Affiliate.total_ggr``). For each of them
graphql-core builds a ``Path`` and a ``GraphQLResolveInfo``, calls strawberry's wrapper,
then walks the generic ``complete_value``: about 7 µs a field. Here (fields chosen by
schema/fast_fields.py):

- a leaf is read and serialised in place with its scalar's (or enum's) own output coercion,
  or none where that coercion returns its input unchanged (a ``str`` for String and ID, an
  in-range ``int`` for Int, a ``bool`` for Boolean);
- an attribute holding an object or a list of objects (``Edge.node``, ``Network.levels``) is
  completed with the object type's fields directly, item by item for a list;
- a resolver without arguments (``Affiliate.network``) is called directly with the Info
  strawberry would build, skipping its per-call argument conversion and extension chain.

Only a value of exactly the expected kind takes a short way. Anything else (another type,
an exception, an awaitable, a null where the schema says non-null, a failed read or
coercion) goes graphql-core's way, which reads the attribute again and reports the error
exactly as before; response order, null propagation and error paths are unchanged
(tests/api/test_execution.py and test_same_answers.py compare both ways).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLResolveInfoHelpers,
    Undefined,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import to_nodes
from graphql.pyutils import Path, gather_with_cancel
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema import fast_fields
from schema.fast_fields import CALL, GENERAL, IDENTITY, INT32, OBJECT, RESOLVER

# (response name, field group, then the FastField's fields spread out, or _GENERAL's)
PlanEntry = tuple[str, FieldDetailsList, Any, Any, int, Any, Any]
_GENERAL = (None, None, GENERAL, None, None)


class FatureExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor (through strawberry's) with the short ways described above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Plans per grouped field set; collect_subfields memoizes those sets per request, so a
        # list of 100 affiliates builds its plan once. The set is kept alive with its plan.
        self._plans: dict[int, tuple[GroupedFieldSet, GraphQLObjectType, list[PlanEntry] | None]] = {}
        settings = getattr(self.context_value, "settings", None)
        # FATURE_FAST_EXECUTION=false: every field goes graphql-core's way.
        self._fast = getattr(settings, "fast_execution", True) is not False
        self._plain = self._fast and not (self.middleware_manager and self.middleware_manager.middlewares)
        self._strawberry_schema = getattr(self.schema, "_strawberry_schema", None)
        # graphql-core's helpers hold bound methods of the executor: a reference cycle that
        # kept each request's executor, context, loaders and rows alive until the cyclic
        # collector ran (a 10-30 ms pause every few dozen requests). Weak references instead.
        executor = weakref.ref(self)
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=lambda values: executor().gather_async_work(values),  # type: ignore[union-attr]
            track=lambda values: executor().track_async_work(values),  # type: ignore[union-attr]
        )

    def _plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> list[PlanEntry] | None:
        cached = self._plans.get(id(grouped_field_set))
        if cached is not None and cached[0] is grouped_field_set and cached[1] is parent_type:
            return cached[2]
        plan: list[PlanEntry] | None = None
        if self._plain:
            plan = []
            get_field = self.schema.get_field
            for response_name, field_details_list in grouped_field_set.items():
                leaf = None
                if not any(d.node.directives or d.node.arguments for d in field_details_list):
                    field_def = get_field(parent_type, field_details_list[0].node.name.value)
                    if field_def is not None:
                        leaf = fast_fields.basic_field(field_def) or fast_fields.simple_resolver(
                            field_def, self._strawberry_schema
                        )
                plan.append((response_name, field_details_list, *(leaf or _GENERAL)))
            if all(entry[4] == GENERAL for entry in plan):
                plan = None
        self._plans[id(grouped_field_set)] = (grouped_field_set, parent_type, plan)
        return plan

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        plan = self._plan(parent_type, grouped_field_set)
        if plan is None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return self._execute_plan(parent_type, source_value, path, plan, position_context)

    def _execute_plan(
        self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None,
        plan: list[PlanEntry], position_context: Any,
    ) -> Any:
        """The loop of Executor.execute_fields, with basic fields completed in place."""
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list, read, exact_type, kind, serialize, nullable in plan:
                if kind <= CALL:
                    try:
                        value = read(source_value)
                        if type(value) is exact_type:
                            if kind == IDENTITY:
                                results[response_name] = value
                                continue
                            if kind == INT32:
                                if GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT:
                                    results[response_name] = value
                                    continue
                            else:
                                coerced = serialize(value)
                                if coerced is not None and coerced is not Undefined:
                                    results[response_name] = coerced
                                    continue
                        elif value is None and nullable:
                            results[response_name] = None
                            continue
                    except Exception:  # noqa: BLE001, S110 - the general path reports it
                        pass
                elif kind == RESOLVER:
                    result = self._execute_resolver(
                        read, serialize, parent_type, source_value, field_details_list,
                        Path(path, response_name, parent_type.name), position_context,
                    )
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
                    continue
                elif kind != GENERAL:
                    result = self._complete_basic_object(
                        kind, read, serialize, nullable, source_value, field_details_list,
                        Path(path, response_name, parent_type.name), position_context,
                    )
                    if result is not _NOT_HERE:
                        results[response_name] = result
                        if is_awaitable(result):
                            awaitable_fields.append(response_name)
                        continue
                result = self.execute_field(
                    parent_type, source_value, field_details_list,
                    Path(path, response_name, parent_type.name), position_context,
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                # As graphql-core does: settle what sibling fields started, they may fail too.
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results
        return _await_fields(results, awaitable_fields)

    def _execute_resolver(
        self, resolve: Callable[[Any, GraphQLResolveInfo], Any], field_def: GraphQLField,
        parent_type: GraphQLObjectType, source: Any, field_details_list: FieldDetailsList, path: Path,
        position_context: Any,
    ) -> Any:
        """Executor.execute_field with ``resolve`` for the field's resolver (no arguments)."""
        return_type = field_def.type
        info = self.build_resolve_info(field_def, to_nodes(field_details_list), parent_type, path)
        try:
            result = resolve(source, info)
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, result, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, result, position_context
            )
            if self.is_awaitable(completed):
                return self._await_field(completed, return_type, field_details_list, path)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed

    def _complete_basic_object(
        self, kind: int, read: Callable[[Any], Any], object_type: GraphQLObjectType, return_type: Any,
        source_value: Any, field_details_list: FieldDetailsList, path: Path, position_context: Any,
    ) -> Any:
        """Executor.execute_field for a basic field holding an object or a list of objects,
        without the resolver call and ResolveInfo: the object's fields are executed directly.
        ``_NOT_HERE`` when the value is not a plain object (or list of them): then the
        general path reads it again and completes it, errors included."""
        try:
            value = read(source_value)
        except Exception:  # noqa: BLE001 - the general path reports it
            return _NOT_HERE
        is_awaitable = self.is_awaitable
        if kind == OBJECT:
            if value is None or isinstance(value, Exception) or is_awaitable(value):
                return _NOT_HERE
        elif type(value) is not list or any(
            item is None or isinstance(item, Exception) or is_awaitable(item) for item in value
        ):
            return _NOT_HERE
        try:
            grouped_field_set, new_defer_usages, _ = self.collect_subfields(object_type, field_details_list)
            if kind == OBJECT:
                completed = self._execute_subfields(
                    object_type, value, path, grouped_field_set, new_defer_usages, position_context
                )
            else:
                list_type = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
                completed = self._complete_object_list(
                    list_type.of_type, object_type, field_details_list, None, path, value, grouped_field_set,
                    new_defer_usages, position_context, items_checked=True,
                )
            if is_awaitable(completed):
                return self._await_field(completed, return_type, field_details_list, path)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed

    def _execute_subfields(
        self, object_type: GraphQLObjectType, value: Any, path: Path, grouped_field_set: GroupedFieldSet,
        new_defer_usages: Any, position_context: Any,
    ) -> Any:
        """execute_collected_subfields; straight to the plan when nothing is deferred (the
        incremental executor then calls execute_fields itself)."""
        if position_context is None and not new_defer_usages:
            plan = self._plan(object_type, grouped_field_set)
            if plan is not None:
                return self._execute_plan(object_type, value, path, plan, position_context)
        return self.execute_collected_subfields(
            object_type, value, path, grouped_field_set, new_defer_usages, position_context
        )

    async def _await_field(
        self, completed: Any, return_type: Any, field_details_list: FieldDetailsList, path: Path
    ) -> Any:
        # Executor.execute_field's await_completed.
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    def complete_list_value(
        self,
        return_type: GraphQLList[Any],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        # A list of non-null objects (no @stream, no is_type_of): each item is completed with
        # the object's fields directly, as complete_list_item_value -> complete_value ->
        # complete_object_value would, through the same collected sub-fields.
        item_type = return_type.of_type
        if (
            self._fast
            and type(result) is list
            and isinstance(item_type, GraphQLNonNull)
            and isinstance(item_type.of_type, GraphQLObjectType)
            and item_type.of_type.is_type_of is None
            and not field_details_list[0].node.directives
        ):
            object_type = item_type.of_type
            grouped_field_set, new_defer_usages, _ = self.collect_subfields(object_type, field_details_list)
            return self._complete_object_list(
                item_type, object_type, field_details_list, info, path, result, grouped_field_set,
                new_defer_usages, position_context,
            )
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _complete_object_list(
        self, item_type: GraphQLNonNull[Any], object_type: GraphQLObjectType,
        field_details_list: FieldDetailsList, info: GraphQLResolveInfo | None, path: Path, items: list[Any],
        grouped_field_set: GroupedFieldSet, new_defer_usages: Any, position_context: Any,
        items_checked: bool = False,
    ) -> Any:
        """Executor.complete_iterable_value for this case, same errors and awaiting.
        ``items_checked``: the caller saw no null, exception or awaitable among the items."""
        is_awaitable = self.is_awaitable
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        index = -1
        try:
            for index, item in enumerate(items):  # noqa: B007 - read after the loop on error
                item_path = path.add_key(index, None)
                if not items_checked and (item is None or isinstance(item, Exception) or is_awaitable(item)):
                    # graphql-core's own handling of this item (null, error or awaitable).
                    assert info is not None  # only a caller that checked the items passes none
                    if is_awaitable(item):
                        completed.append(self.complete_awaitable_list_item_value(
                            item, item_type, field_details_list, info, item_path, position_context
                        ))
                        awaitable_indices.append(index)
                    elif self.complete_list_item_value(
                        item, completed, item_type, field_details_list, info, item_path, position_context
                    ):
                        awaitable_indices.append(index)
                    continue
                try:
                    data = self._execute_subfields(
                        object_type, item, item_path, grouped_field_set, new_defer_usages, position_context
                    )
                    if is_awaitable(data):
                        completed.append(self._await_item(data, item_type, field_details_list, item_path))
                        awaitable_indices.append(index)
                    else:
                        completed.append(data)
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                    completed.append(None)
        except Exception:
            pending = [completed[index] for index in awaitable_indices]
            pending += [item for item in items[index + 1:] if is_awaitable(item)]
            if pending:
                self.settle_in_background(pending)
            raise
        if not awaitable_indices:
            return completed
        return _await_items(completed, awaitable_indices)

    async def _await_item(
        self, data: Any, item_type: GraphQLNonNull[Any], field_details_list: FieldDetailsList, item_path: Path
    ) -> Any:
        try:
            return await data
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, field_details_list, item_path)
            return None


_NOT_HERE = object()  # a basic object field the short way cannot complete


async def _await_fields(results: dict[str, Any], awaitable_fields: Sequence[str]) -> dict[str, Any]:
    if len(awaitable_fields) == 1:
        field = awaitable_fields[0]
        results[field] = await results[field]
    else:
        awaited = await gather_with_cancel(*(results[field] for field in awaitable_fields))
        results.update(zip(awaitable_fields, awaited, strict=True))
    return results


async def _await_items(completed: list[Any], awaitable_indices: Sequence[int]) -> list[Any]:
    if len(awaitable_indices) == 1:
        index = awaitable_indices[0]
        completed[index] = await completed[index]
    else:
        awaited = await gather_with_cancel(*(completed[index] for index in awaitable_indices))
        for index, value in zip(awaitable_indices, awaited, strict=True):
            completed[index] = value
    return completed
