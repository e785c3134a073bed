"""The style catalog (styles.yaml), the attribute catalog (attributes.yaml) and the prompt rules."""
