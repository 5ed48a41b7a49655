"""DICOM inputs of a task: files and folders read into AvailableData (:mod:`.inputs`), what GetData
hands out for them (:mod:`.delivery`), and generated sample data (:mod:`.samples`)."""
