package bolt

import "os"

// syncDir fsyncs the directory dir, so that the names created in it
// survive a power loss, where the system allows it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
