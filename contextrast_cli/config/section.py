"""What every config section shares: frozen, typos refused, field docs from attribute docstrings;
and the constrained number types the sections use."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, Field(gt=0)]
Unit = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    """A config section: validated once, then frozen; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
