"""Label and field selectors: one import for both kinds.

The selectors live in two modules by behaviour: `kybernetes.core.api.labels`
(label selectors: the string syntax, `pb.LabelSelector` conversion, matching,
label key and value rules) and `kybernetes.core.api.fields` (field selectors).
This module re-exports both public surfaces, so `from kybernetes.core.api
import selectors` and `from kybernetes.core.api.selectors import X` keep
working; new code may import from either module directly.
"""

from __future__ import annotations

from kybernetes.core.api.fields import SUPPORTED_FIELDS as SUPPORTED_FIELDS
from kybernetes.core.api.fields import FieldRequirement as FieldRequirement
from kybernetes.core.api.fields import FieldSelector as FieldSelector
from kybernetes.core.api.fields import parse_field_selector as parse_field_selector
from kybernetes.core.api.labels import EVERYTHING as EVERYTHING
from kybernetes.core.api.labels import PROTO_OPERATORS as PROTO_OPERATORS
from kybernetes.core.api.labels import LabelSelector as LabelSelector
from kybernetes.core.api.labels import Operator as Operator
from kybernetes.core.api.labels import Requirement as Requirement
from kybernetes.core.api.labels import SelectorError as SelectorError
from kybernetes.core.api.labels import from_labels as from_labels
from kybernetes.core.api.labels import from_proto as from_proto
from kybernetes.core.api.labels import label_key_error as label_key_error
from kybernetes.core.api.labels import label_value_error as label_value_error
from kybernetes.core.api.labels import parse_label_selector as parse_label_selector
from kybernetes.core.api.labels import to_string as to_string
