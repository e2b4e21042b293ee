"""The decode suite's child side: what one token of generation costs against context."""
